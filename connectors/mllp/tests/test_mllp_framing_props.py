"""Property-based tests of the MLLP frame decoder (needs hypothesis, the ``test`` extra)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from hypothesis import given, settings  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402
from pannier_mllp.framing import FrameDecoder, FrameTooLargeError, encode_frame  # noqa: E402

SB, EB = b"\x0b", b"\x1c\x0d"


if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # Hypothesis caches into ./.hypothesis (already while collecting); keep the work tree clean.
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pannier-mllp-hypothesis")

payloads = st.binary(max_size=300).map(lambda b: b.replace(EB, b""))
garbage = st.binary(max_size=20).map(lambda b: b.replace(SB, b""))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


@settings(max_examples=300, deadline=None, database=None)
@given(
    messages=st.lists(st.tuples(garbage, payloads), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),
)
def test_any_split_yields_the_same_frames(
    messages: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(junk + encode_frame(payload) for junk, payload in messages)
    decoder = FrameDecoder()
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(stream, cuts):
        events.extend(decoder.feed(piece))
    assert events == [payload for _, payload in messages]
    assert not decoder.in_frame


@settings(max_examples=200, deadline=None, database=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=15),
    limit=st.integers(min_value=1, max_value=100),
    cuts=st.lists(st.integers(min_value=0, max_value=10**5), max_size=30),
)
def test_oversized_frames_are_reported_in_place(
    sizes: list[int], limit: int, cuts: list[int]
) -> None:
    payloads_ = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    stream = b"".join(encode_frame(p) for p in payloads_)
    decoder = FrameDecoder(max_frame_size=limit)
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(stream, cuts):
        events.extend(decoder.feed(piece))
        assert decoder.buffered <= limit + len(piece) + 1
    expected = [p if len(p) <= limit else "too large" for p in payloads_]
    assert ["too large" if isinstance(e, FrameTooLargeError) else e for e in events] == expected


@settings(max_examples=200, deadline=None, database=None)
@given(
    start=st.binary(min_size=1, max_size=3),
    end=st.binary(min_size=1, max_size=3),
    body=st.lists(st.binary(max_size=50), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10**5), max_size=20),
)
def test_custom_frame_bytes(start: bytes, end: bytes, body: list[bytes], cuts: list[int]) -> None:
    clean = []
    for payload in body:
        while end in payload:
            payload = payload.replace(end, b"")
        # A payload whose tail plus the end bytes hides an earlier end sequence cannot be
        # framed unambiguously (true of every delimiter protocol); skip those.
        if end in (payload + end)[: len(payload) + len(end) - 1]:
            continue
        clean.append(payload)
    stream = b"".join(start + payload + end for payload in clean)
    decoder = FrameDecoder(start, end)
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(stream, cuts):
        events.extend(decoder.feed(piece))
    assert events == clean
