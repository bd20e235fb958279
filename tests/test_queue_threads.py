"""Destination queue threads: ``threadCount`` workers deliver one queue, and with a
``threadAssignmentVariable`` the messages sharing a value go through one worker, in order,
while other values proceed in parallel — also after a restart, when the value is read back
from the stored maps.

The downstream is a real MLLP server (the destination a TCP Sender) that records when each
message starts and finishes. It holds the first message of each key until a second key (or,
without a variable, a second message) is in flight, or a few seconds have passed; so the
record itself shows whether two deliveries overlapped, with no timing in any assertion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
from pannier.runtime.queue import bucket_of
from pannier_mllp import send_mllp

from .test_end_to_end import query, start, write_config


def write_db_config(tmp_path, channel: str, url: str):
    """The config of ``write_config``, on the database at ``url``."""
    config = write_config(tmp_path, channel)
    config.write_text(config.read_text() + f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return config


KEYS = ("KEYA", "KEYD")
HOLD_SECONDS = 3.0
"""Fail-safe only: how long a held message waits for a partner that never comes (the test
then fails on the record, not on this time)."""


@dataclass
class Downstream:
    """An MLLP server that records ``(event, key, control id)`` and answers AA."""

    by_key: bool
    up: bool = True
    events: list[tuple[str, str, str]] = field(default_factory=list)
    in_flight: list[tuple[str, str]] = field(default_factory=list)
    partner: trio.Event = field(default_factory=trio.Event)
    held: set[str] = field(default_factory=set)
    port: int = 0

    def _overlapping(self) -> bool:
        if self.by_key:
            return len({key for key, _ in self.in_flight}) >= 2
        return len(self.in_flight) >= 2

    async def handle(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while b"\x1c\r" in buffer:
                    frame, buffer = buffer.split(b"\x1c\r", 1)
                    if not self.up:  # half a response, then close: the sender queues again
                        await stream.send_all(b"\x0bMSH|")
                        return
                    await self._answer(stream, frame.lstrip(b"\x0b").decode())

    async def _answer(self, stream: trio.SocketStream, message: str) -> None:
        msh = message.split("\r", 1)[0].split("|")
        key, control_id = msh[2], msh[9]
        self.events.append(("start", key, control_id))
        self.in_flight.append((key, control_id))
        if self._overlapping():
            self.partner.set()
        hold_key = key if self.by_key else "any"
        if hold_key not in self.held:
            self.held.add(hold_key)
            with trio.move_on_after(HOLD_SECONDS):
                await self.partner.wait()
        await trio.sleep(0.01)  # stay in flight a moment, as a real downstream would
        self.in_flight.remove((key, control_id))
        self.events.append(("finish", key, control_id))
        ack = f"MSH|^~\\&|DOWN|X|{key}|Y|20260101||ACK|A{control_id}|P|2.5.1\rMSA|AA|{control_id}\r"
        await stream.send_all(b"\x0b" + ack.encode() + b"\x1c\r")

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self.handle, listeners)

    # --- what the record shows ---------------------------------------------------------------

    def finished(self) -> list[str]:
        return [cid for event, _key, cid in self.events if event == "finish"]

    def started_for(self, key: str) -> list[str]:
        return [cid for event, k, cid in self.events if event == "start" and k == key]

    def most_at_once(self, *, same_key: str | None = None) -> int:
        """The most deliveries in flight together (of one key, when given)."""
        current = most = 0
        for event, key, _cid in self.events:
            if same_key is not None and key != same_key:
                continue
            current += 1 if event == "start" else -1
            most = max(most, current)
        return most

    def keys_overlapped(self) -> bool:
        inside: dict[str, int] = {}
        for event, key, _cid in self.events:
            inside[key] = inside.get(key, 0) + (1 if event == "start" else -1)
            if sum(1 for n in inside.values() if n > 0) >= 2:
                return True
        return False


def channel(port: int, queue: str) -> str:
    return f"""
id = "6a0c9b1e-3f5d-4c2a-9e8b-7d6f5a4b3c2d"
name = "Queue threads"
[source]
transportName = "TCP Listener"
inboundDataType = "HL7V2"
responseVariable = "Auto-generate (Destinations completed)"
[source.properties]
host = "127.0.0.1"
port = 0
[[source.transformer.steps]]
kind = "mapper"
variable = "key"
mapping = "MSH.3"
scope = "channel"

[[destinations]]
metaDataId = 1
name = "Downstream"
transportName = "TCP Sender"
queueEnabled = true
retryIntervalMillis = 100
{queue}
[destinations.properties]
remoteAddress = "127.0.0.1"
remotePort = "{port}"
responseTimeout = 30000
"""


def hl7(hl7_sample, key: str, control_id: str) -> bytes:
    template = hl7_sample("adt_a01.hl7")
    return template.replace(b"MSG00001", control_id.encode()).replace(
        b"|REGADT|", f"|{key}|".encode()
    )


def batch(hl7_sample, per_key: int) -> tuple[list[bytes], dict[str, list[str]]]:
    """All of KEYA's messages first, then KEYB's: a queue that ignored the variable would
    give two of KEYA's messages to two workers at once."""
    payloads, expected = [], {}
    for key in KEYS:
        expected[key] = [f"{key[-1]}{i:02d}" for i in range(per_key)]
        payloads += [hl7(hl7_sample, key, cid) for cid in expected[key]]
    return payloads, expected


async def wait_for(predicate, seconds: float = 40) -> None:
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.05)


def assert_assignment_held(downstream: Downstream, expected: dict[str, list[str]]) -> None:
    everything = sorted(cid for cids in expected.values() for cid in cids)
    assert sorted(downstream.finished()) == everything, "each message delivered exactly once"
    for key, cids in expected.items():
        assert downstream.started_for(key) == cids, f"{key}: delivered in the order received"
        assert downstream.most_at_once(same_key=key) == 1, f"{key}: one at a time"
    assert downstream.keys_overlapped(), "the two keys were delivered in parallel"


def test_the_two_keys_go_to_different_workers() -> None:
    # The tests below rely on it: two keys on one worker could not overlap.
    assert bucket_of(KEYS[0], 2) != bucket_of(KEYS[1], 2)


async def test_messages_with_one_key_keep_their_order_while_keys_run_in_parallel(
    nursery, tmp_path, hl7_sample, db_url
) -> None:
    downstream = Downstream(by_key=True)
    port = await nursery.start(downstream.serve)
    queue = 'threadCount = 2\nthreadAssignmentVariable = "key"'
    engine, source_port = await start(
        nursery, write_db_config(tmp_path, channel(port, queue), db_url)
    )
    payloads, expected = batch(hl7_sample, 4)
    acks = await send_mllp("127.0.0.1", source_port, payloads, timeout=10)
    assert all(b"MSA|AA|" in ack for ack in acks)
    await wait_for(lambda: len(downstream.finished()) == 8)
    assert_assignment_held(downstream, expected)
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(
        lambda: {s for (s,) in query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1")} == {"S"}
    )
    assert query(
        engine, f"SELECT COUNT(*) FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 6"
    ) == [(8,)], "one stored response per message"


async def test_without_a_variable_the_workers_share_the_queue(
    nursery, tmp_path, hl7_sample
) -> None:
    downstream = Downstream(by_key=False)
    port = await nursery.start(downstream.serve)
    _engine, source_port = await start(
        nursery, write_config(tmp_path, channel(port, "threadCount = 2\nqueueBufferSize = 3"))
    )
    payloads, expected = batch(hl7_sample, 3)
    await send_mllp("127.0.0.1", source_port, payloads, timeout=10)
    await wait_for(lambda: len(downstream.finished()) == 6)
    assert sorted(downstream.finished()) == sorted(expected["KEYA"] + expected["KEYD"])
    assert downstream.most_at_once() == 2, "two messages in flight at once, no more"


async def test_one_worker_delivers_one_message_at_a_time(nursery, tmp_path, hl7_sample) -> None:
    downstream = Downstream(by_key=False)
    port = await nursery.start(downstream.serve)
    _engine, source_port = await start(nursery, write_config(tmp_path, channel(port, "")))
    payloads, expected = batch(hl7_sample, 2)
    await send_mllp("127.0.0.1", source_port, payloads, timeout=10)
    await wait_for(lambda: len(downstream.finished()) == 4)
    assert downstream.finished() == expected["KEYA"] + expected["KEYD"], "in order"
    assert downstream.most_at_once() == 1


async def test_the_assignment_holds_after_a_restart(tmp_path, hl7_sample, db_url) -> None:
    async with trio.open_nursery() as outer:
        downstream = Downstream(by_key=True, up=False)
        port = await outer.start(downstream.serve)
        queue = 'threadCount = 2\nthreadAssignmentVariable = "key"'
        config = write_db_config(tmp_path, channel(port, queue), db_url)
        payloads, expected = batch(hl7_sample, 3)
        async with trio.open_nursery() as first:
            engine, source_port = await start(first, config)
            await send_mllp("127.0.0.1", source_port, payloads, timeout=10)
            n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
            assert query(engine, f"SELECT COUNT(*) FROM D_MM{n} WHERE ID = 1 AND STATUS = 'Q'") == [
                (6,)
            ]
            engine.request_stop()
        assert downstream.events == [], "nothing was delivered before the restart"
        downstream.up = True
        async with trio.open_nursery() as second:
            engine, _ = await start(second, config)
            await wait_for(lambda: len(downstream.finished()) == 6)
            assert_assignment_held(downstream, expected)
            engine.request_stop()
        outer.cancel_scope.cancel()


def test_a_queue_needs_at_least_one_thread(tmp_path) -> None:
    from pannier.config import load_config
    from pannier.engine import DeployError, Engine
    from pannier.model.channel_file import channel_from_dict

    config = tmp_path / "pannier.toml"
    config.write_text("[channels]\npaths = []\n")
    engine = Engine(load_config(config, environ={}))
    destination = {"name": "d", "transportName": "File Writer", "queueEnabled": True}
    channel = channel_from_dict(
        {
            "name": "c",
            "source": {"transportName": "TCP Listener"},
            "destinations": [{**destination, "threadCount": 0}],
        }
    )
    with pytest.raises(DeployError, match=r"threadCount 0 is not valid; expected .* at least 1"):
        engine.prepare(channel)
    channel.destinations[0].queue.threadCount = 3
    channel.destinations[0].queue.threadAssignmentVariable = "mrn"
    engine.prepare(channel)  # Mirth's queue threads with an assignment variable deploy
