"""The downstream system is down (30 s in ``make reliability``, a few seconds here) while
messages keep arriving for a queued TCP Sender: every message is acknowledged and queued, and
once the downstream is back each one is delivered, exactly once."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import trio
from pannier_mllp import send_mllp

from tests.reliability.helpers import Counts, scaled
from tests.reliability.servers import free_port
from tests.test_end_to_end import example_channel, query, start, write_config

CONTROL = re.compile(rb"\|(DOWN\d{6})\|")


def queued_sender_channel(downstream_port: int) -> str:
    head, _destination = example_channel().split("[[destinations]]", 1)
    return head + (
        "[[destinations]]\n"
        "metaDataId = 1\n"
        'name = "Downstream"\n'
        'transportName = "TCP Sender"\n'
        "queueEnabled = true\n"
        "retryIntervalMillis = 200\n\n"
        "[destinations.properties]\n"
        'remoteAddress = "127.0.0.1"\n'
        f'remotePort = "{downstream_port}"\n'
        "responseTimeout = 5000\n"
    )


async def downstream(port: int, received: Counter[str], task_status=trio.TASK_STATUS_IGNORED):
    """An MLLP system that records each message's control id and acknowledges it."""

    async def handle(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            while True:
                end = buffer.find(b"\x1c\r")
                if end < 0:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                    continue
                frame = bytes(buffer[:end])
                del buffer[: end + 2]
                control = CONTROL.search(frame)
                if control:
                    received[control.group(1).decode()] += 1
                ack = b"MSH|^~\\&|DOWN|||||||ACK|1|P|2.5.1\rMSA|AA|" + (
                    control.group(1) if control else b""
                )
                await stream.send_all(b"\x0b" + ack + b"\r\x1c\r")

    await trio.serve_tcp(handle, port, host="127.0.0.1", task_status=task_status)


@pytest.mark.slow
async def test_every_message_is_delivered_after_the_downstream_returns(
    nursery, tmp_path, hl7_sample
) -> None:
    port = free_port()
    engine, listener = await start(nursery, write_config(tmp_path, queued_sender_channel(port)))
    template = hl7_sample("adt_a01.hl7")
    down_for = scaled(3.0, 30.0)
    total = int(scaled(150, 1500))
    acked: list[str] = []

    async def sender(first: int) -> None:
        for i in range(first, total, 5):
            control = f"DOWN{i:06d}"
            (ack,) = await send_mllp(
                "127.0.0.1",
                listener,
                [template.replace(b"MSG00001", control.encode())],
                timeout=10,
            )
            if b"MSA|AA|" + control.encode() in ack:
                acked.append(control)
            await trio.sleep(down_for / (total / 5))  # spread over the outage

    async with trio.open_nursery() as senders:
        for first in range(5):
            senders.start_soon(sender, first)
    assert len(acked) == total, "queued messages are acknowledged while the downstream is down"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    queued = query(engine, f"SELECT COUNT(*) FROM D_MM{n} WHERE ID = 1 AND STATUS = 'Q'")[0][0]
    assert queued > 0, "the downstream was down: messages wait in the queue"

    received: Counter[str] = Counter()
    await nursery.start(downstream, port, received)
    with trio.fail_after(scaled(60, 300)):
        while len(received) < total:
            await trio.sleep(0.1)
        while query(engine, f"SELECT COUNT(*) FROM D_MM{n} WHERE ID = 1 AND STATUS <> 'S'")[0][0]:
            await trio.sleep(0.1)
    await trio.sleep(0.5)  # anything delivered twice would arrive by now
    counts = Counts.of(total, acked, received)
    counts.show(f"downstream down {down_for:g} s, {queued} queued", stored="delivered")
    assert counts.lost == 0 and counts.duplicated == 0
