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


# -- frame bytes inside payloads and garbage, resynchronisation ------------------------------


def _without(data: bytes, needle: bytes) -> bytes:
    while needle and needle in data:
        data = data.replace(needle, b"")
    return data


# Payloads made of the bytes that matter most: start bytes, lone halves of the end sequence.
tricky_payloads = st.lists(
    st.sampled_from([SB, SB * 2, b"\x1c", b"\x0d", b"\x0d\x1c", b"\x1c\x1c", b"MSH|"])
    | st.binary(max_size=4),
    max_size=30,
).map(lambda parts: _without(b"".join(parts), EB))
# Garbage between frames may hold end bytes and lone halves, but no start byte.
tricky_garbage = st.lists(
    st.sampled_from([EB, b"\x1c", b"\x0d", b"\r\n", EB * 2]) | st.binary(max_size=4),
    max_size=6,
).map(lambda parts: _without(b"".join(parts), SB))


@settings(max_examples=300, deadline=None, database=None)
@given(
    messages=st.lists(st.tuples(tricky_garbage, tricky_payloads), max_size=12),
    trailing=tricky_garbage,
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),
)
def test_frame_bytes_inside_payloads_and_garbage(
    messages: list[tuple[bytes, bytes]], trailing: bytes, cuts: list[int]
) -> None:
    stream = b"".join(junk + encode_frame(payload) for junk, payload in messages) + trailing
    decoder = FrameDecoder()
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(stream, cuts):
        events.extend(decoder.feed(piece))
    assert events == [payload for _, payload in messages]
    assert not decoder.in_frame


@settings(max_examples=200, deadline=None, database=None)
@given(
    start=st.binary(min_size=1, max_size=3),
    end=st.binary(min_size=1, max_size=3),
    messages=st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=40)), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10**5), max_size=20),
)
def test_garbage_between_frames_with_custom_frame_bytes(
    start: bytes, end: bytes, messages: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    framed: list[tuple[bytes, bytes]] = []
    for junk, payload in messages:
        junk, payload = _without(junk, start), _without(payload, end)
        # Skip the inherently ambiguous cases: a start sequence straddling garbage and the real
        # start bytes, or an end sequence straddling payload and the real end bytes.
        if (junk + start).find(start) != len(junk) or (payload + end).find(end) != len(payload):
            continue
        framed.append((junk, payload))
    stream = b"".join(junk + start + payload + end for junk, payload in framed)
    decoder = FrameDecoder(start, end)
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(stream, cuts):
        events.extend(decoder.feed(piece))
    assert events == [payload for _, payload in framed]


@settings(max_examples=300, deadline=None, database=None)
@given(
    junk=st.binary(max_size=200),
    limit=st.integers(min_value=16, max_value=64),  # the good frame fits
    cuts=st.lists(st.integers(min_value=0, max_value=10**5), max_size=20),
)
def test_end_bytes_always_resynchronise(junk: bytes, limit: int, cuts: list[int]) -> None:
    """Whatever came before (half frames, oversized frames, noise), end bytes followed by a
    good frame get that frame through: a confused peer can always recover."""
    good = b"MSH|^~\\&|good\r"
    decoder = FrameDecoder(max_frame_size=limit)
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(junk + EB + encode_frame(good), cuts):
        events.extend(decoder.feed(piece))
        assert decoder.buffered <= limit + len(piece) + len(EB)  # memory stays bounded
    assert events[-1] == good
    assert decoder.buffered == 0 and not decoder.in_frame


@settings(max_examples=300, deadline=None, database=None)
@given(payload=st.binary(max_size=200), cuts=st.lists(st.integers(0, 500), max_size=10))
def test_encode_refuses_exactly_what_would_be_cut(payload: bytes, cuts: list[int]) -> None:
    from pannier_mllp.framing import FrameEncodeError

    if EB in payload:
        with pytest.raises(FrameEncodeError):
            encode_frame(payload)
        return
    decoder = FrameDecoder()
    events: list[bytes | FrameTooLargeError] = []
    for piece in split(encode_frame(payload), cuts):
        events.extend(decoder.feed(piece))
    assert events == [payload]
