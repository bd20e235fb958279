"""Malformed MLLP frames and malformed HL7 messages interleaved with good ones (10,000 in
``make reliability``, fewer here): every good message is processed and stored once, every bad
HL7 message is answered with a negative acknowledgement saying why, bytes outside frames are
skipped, an oversized frame closes its connection with an error in the log, the engine never
crashes, and its memory does not grow."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from pannier.cli.bench import END, START, read_frame, rss_mib

from tests.reliability.helpers import Counts, scaled, start_engine, stored_control_ids
from tests.test_end_to_end import example_channel, write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7"
MAX_FRAME = 65536


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """Each kind of bad input: (bytes to send, what must come back: "nak", "nothing" or
    "closed")."""
    good = (FIXTURES / "adt_a01.hl7").read_bytes()
    return {
        "no MSH": (START + (FIXTURES / "bad_no_msh.hl7").read_bytes() + END, "nak"),
        "truncated MSH": (START + (FIXTURES / "bad_truncated_msh.hl7").read_bytes() + END, "nak"),
        "binary": (START + (FIXTURES / "bad_binary.hl7").read_bytes() + END, "nak"),
        "not HL7 at all": (START + b"hello, is this the lab?" + END, "nak"),
        "invalid UTF-8": (START + good.replace(b"Everyman", b"Every\xff\xfeman") + END, "nak"),
        "bytes outside a frame": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "nothing"),
        "oversized frame": (START + b"MSH|" + b"x" * (MAX_FRAME + 10) + END, "closed"),
    }


class Client:
    """One persistent MLLP connection, reopened when the engine closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = bytearray()

    async def send(self, data: bytes, expect_reply: bool) -> bytes | None:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = bytearray()
        await self.stream.send_all(data)
        if not expect_reply:
            return None
        with trio.fail_after(30):
            try:
                return await read_frame(self.stream, self.buffer)
            except (EOFError, trio.BrokenResourceError):
                await self.stream.aclose()
                self.stream = None
                return None


def msa(ack: bytes) -> tuple[str, str]:
    """MSA-1 (the acknowledgement code) and MSA-3 (the text saying why)."""
    line = next((s for s in ack.split(b"\r") if s.startswith(b"MSA|")), b"MSA|?")
    fields = line.decode("utf-8", "replace").split("|")
    return fields[1], fields[3] if len(fields) > 3 else ""


@pytest.mark.slow
def test_malformed_frames_and_messages_among_good_ones(tmp_path, hl7_sample) -> None:
    channel = example_channel().replace("port = 0", f"port = 0\nmaxFrameSize = {MAX_FRAME}")
    url = f"sqlite:///{tmp_path / 'pannier.db'}"
    process, port = start_engine(write_config(tmp_path, channel), url)
    template = hl7_sample("adt_a01.hl7")
    kinds = bad_inputs()
    names = list(kinds)
    bad_total = int(scaled(350, 10_000))
    outcomes: dict[str, Counter[str]] = {name: Counter() for name in names}
    acked: list[str] = []
    good_sent = 0
    rss: list[float] = []
    samples: dict[str, str] = {}

    async def run() -> None:
        nonlocal good_sent
        client = Client(port)
        for i in range(bad_total):
            if i == len(names) * 5:
                rss.append(rss_mib(process.pid))  # every kind seen: the baseline
            control = f"GOOD{i:06d}"
            good_sent += 1
            ack = await client.send(
                START + template.replace(b"MSG00001", control.encode()) + END, True
            )
            if ack is not None and b"MSA|AA|" + control.encode() in ack:
                acked.append(control)
            name = names[i % len(names)]
            data, expected = kinds[name]
            if expected == "nothing":
                await client.send(data, False)
                outcomes[name]["skipped"] += 1
                continue
            reply = await client.send(data, True)
            if reply is None:
                outcomes[name]["connection closed"] += 1
            else:
                code, text = msa(reply)
                outcomes[name][f"MSA {code}"] += 1
                outcomes[name]["with error text"] += bool(text.strip())
                samples.setdefault(name, text)
        rss.append(rss_mib(process.pid))

    try:
        trio.run(run)
        assert process.poll() is None, "the engine is still running"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    found = stored_control_ids(url, r"\|(GOOD\d{6})\|")
    counts = Counts.of(good_sent, acked, found)
    counts.show(f"good messages among {bad_total} bad inputs")
    for name in names:
        print(f"  {name}: {dict(outcomes[name])} {samples.get(name, '')[:100]!r}")
    print(f"  engine RSS {rss[0]:.1f} MiB after the first bad inputs, {rss[-1]:.1f} MiB at the end")
    assert counts.acknowledged == good_sent and counts.lost == 0 and counts.duplicated == 0
    for name in names:
        expected = kinds[name][1]
        seen = outcomes[name]
        if expected == "nak":
            naks = seen["MSA AE"] + seen["MSA AR"]
            assert naks == sum(v for k, v in seen.items() if k.startswith("MSA")), (name, seen)
            assert naks > 0 and seen["with error text"] == naks, (name, seen)
        elif expected == "closed":
            assert seen == Counter({"connection closed": seen["connection closed"]}), (name, seen)
    assert rss[-1] - rss[0] < 20, "memory does not grow with bad input"
    # The NAK carries Mirth's generic text; the reason is stored with the message.
    database = sa.create_engine(url, poolclass=sa.NullPool)
    with database.connect() as db:
        errors = db.execute(
            sa.text(
                "SELECT MM.MESSAGE_ID, MC.CONTENT FROM D_MM1 MM LEFT JOIN D_MC1 MC ON "
                "MC.MESSAGE_ID = MM.MESSAGE_ID AND MC.METADATA_ID = 0 AND MC.CONTENT_TYPE = 12 "
                "WHERE MM.ID = 0 AND MM.STATUS = 'E'"
            )
        ).all()
    database.dispose()
    naks = sum(c["MSA AE"] + c["MSA AR"] for c in outcomes.values())
    print(f"  stored as ERROR: {len(errors)}, for example {errors[0][1][:120]!r}")
    assert len(errors) == naks and all(content for _id, content in errors)
