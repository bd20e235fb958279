"""MLLP release 2 (commit acknowledgements, Mirth's ``useMLLPv2``) between real peers on
loopback: the TCP Sender and TCP Listener with each other and with scripted peers."""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from pannier import ChannelStoppedError, SendRequest, Status
from pannier_mllp import FrameDecoder, encode_frame

ACK, NAK = encode_frame(b"\x06"), encode_frame(b"\x15")
V2 = {"useMLLPv2": True}


class Peer:
    """One side of a connection, reading whole frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()
        self.frames: deque[bytes] = deque()

    async def frame(self, timeout: float = 5.0) -> bytes | None:
        """The next frame, or ``None`` once the other side closed."""
        with trio.fail_after(timeout):
            while not self.frames:
                try:
                    data = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return None
                if not data:
                    return None
                self.frames.extend(f for f in self.decoder.feed(data) if isinstance(f, bytes))
        return self.frames.popleft()

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(encode_frame(payload))


def request(port: int) -> SendRequest:
    return SendRequest(
        channel_id="c",
        message_id=1,
        metadata_id=1,
        encoded="MSH|^~\\&|V2\r",
        properties={"remoteAddress": "127.0.0.1", "remotePort": port, "template": ""},
    )


async def scripted_server(
    nursery: trio.Nursery, script: Callable[[Peer], Awaitable[None]]
) -> tuple[list[bytes], int]:
    """A TCP server running ``script`` per connection; returns (frames seen, port)."""
    seen: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        peer = Peer(stream)
        original = peer.frame

        async def recording_frame(timeout: float = 5.0) -> bytes | None:
            frame = await original(timeout)
            if frame is not None:
                seen.append(frame)
            return frame

        peer.frame = recording_frame  # type: ignore[method-assign]
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await script(peer)
            await peer.frame(1)  # give the sender time to finish before closing

    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    return seen, listeners[0].socket.getsockname()[1]


# -- Pannier with Pannier --------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
async def test_sender_and_listener_round_trip(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any, tls: bool
) -> None:
    server = {"tlsEnabled": True, "tlsCertFile": pki.server_cert, "tlsKeyFile": pki.server_key}
    client = {"tlsEnabled": True, "tlsCaFile": pki.ca}
    recorder = recorder_factory(respond=lambda raw: "ACK " + raw.content[-3:-1])
    running = await listen(recorder, **V2, **(server if tls else {}))
    sender = make_sender(keepConnectionOpen=True, **V2, **(client if tls else {}))
    for _ in range(3):
        response = await sender.send(request(running.port))
        assert (response.status, response.message) == (Status.SENT, "ACK V2")
    # Each message was taken once, all on one connection kept in step by the commit blocks.
    assert len(recorder.messages) == 3
    assert running.listener.connections == 1
    await sender.stop()


# -- the listener's side ---------------------------------------------------------------------


async def test_listener_acknowledges_then_responds(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory(respond=lambda raw: "MSA|AA")
    running = await listen(recorder, **V2)
    client = Peer(await trio.open_tcp_stream("127.0.0.1", running.port))
    for number in (1, 2):
        await client.send(b"MSH|%d\r" % number)
        assert await client.frame() == b"\x06"  # commit ACK: the message is stored
        assert await client.frame() == b"MSA|AA"
        await client.send(b"\x06")  # our commit ACK of the response
    await client.send(b"\x06")  # a stray commit block (say, a late duplicate)...
    await client.send(b"MSH|3\r")
    assert [await client.frame(), await client.frame()] == [b"\x06", b"MSA|AA"]
    # ...is never taken for a message.
    assert [raw.content for raw in recorder.messages] == ["MSH|1\r", "MSH|2\r", "MSH|3\r"]
    await client.stream.aclose()


async def test_listener_naks_what_it_could_not_store(listen: Any, recorder_factory: Any) -> None:
    failures = [RuntimeError("database unavailable")]
    recorder = recorder_factory(fail=lambda raw: failures.pop() if failures else None)
    running = await listen(recorder, **V2)
    client = Peer(await trio.open_tcp_stream("127.0.0.1", running.port))
    await client.send(b"MSH|1\r")
    assert await client.frame() == b"\x15"  # NAK; the connection stays open for a resend
    await client.send(b"MSH|1\r")
    assert [await client.frame(), await client.frame()] == [b"\x06", b"ACK"]
    await client.send(b"\x06")
    await client.stream.aclose()


async def test_listener_naks_and_closes_when_the_channel_stops(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory(fail=lambda raw: ChannelStoppedError("stopping"))
    running = await listen(recorder, **V2)
    client = Peer(await trio.open_tcp_stream("127.0.0.1", running.port))
    await client.send(b"MSH|1\r")
    assert await client.frame() == b"\x15"
    assert await client.frame() is None


async def test_listener_resends_an_unacknowledged_response_within_max_retries(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory(respond=lambda raw: "MSA|AA")
    running = await listen(recorder, receiveTimeout=200, maxRetries=2, **V2)
    client = Peer(await trio.open_tcp_stream("127.0.0.1", running.port))
    await client.send(b"MSH|1\r")
    assert await client.frame() == b"\x06"
    assert await client.frame() == b"MSA|AA"
    await client.send(b"\x15")  # NAK: sent again at once
    assert await client.frame() == b"MSA|AA"
    # Silence: resent after receiveTimeout, then (maxRetries = 2 used up) the connection closes.
    assert await client.frame() == b"MSA|AA"
    assert await client.frame() is None
    assert len(recorder.messages) == 1  # resending a response never re-processes the message


# -- the sender's side -----------------------------------------------------------------------


async def test_sender_resends_after_a_nak_and_commits_the_response(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    async def script(peer: Peer) -> None:
        await peer.frame()
        await peer.send(b"\x15")  # could not store it
        await peer.frame()
        await peer.send(b"\x06")
        await peer.send(b"MSA|AA")
        await peer.frame()  # the sender's commit ACK of the response

    seen, port = await scripted_server(nursery, script)
    response = await make_sender(**V2).send(request(port))
    assert (response.status, response.message) == (Status.SENT, "MSA|AA")
    with trio.fail_after(5):
        while len(seen) < 3:
            await trio.sleep(0.01)
    assert seen == [b"MSH|^~\\&|V2\r", b"MSH|^~\\&|V2\r", b"\x06"]


async def test_sender_resends_on_timeout_and_skips_a_late_commit_block(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    async def script(peer: Peer) -> None:
        await peer.frame()
        await trio.sleep(0.5)  # past responseTimeout: the sender resends meanwhile
        await peer.send(b"\x06")  # (late) ACK of the first copy
        await peer.frame()  # the second copy
        await peer.send(b"\x06")  # its ACK, which must not be taken for the response
        await peer.send(b"MSA|AA")

    seen, port = await scripted_server(nursery, script)
    response = await make_sender(responseTimeout=300, **V2).send(request(port))
    assert (response.status, response.message) == (Status.SENT, "MSA|AA")
    assert seen[:2] == [b"MSH|^~\\&|V2\r"] * 2


@pytest.mark.parametrize("answer", [b"\x15", b"what?"])
async def test_sender_gives_up_after_max_retries(
    nursery: trio.Nursery, make_sender: Any, answer: bytes
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.frame() is not None:
            await peer.send(answer)

    seen, port = await scripted_server(nursery, script)
    response = await make_sender(maxRetries="2", **V2).send(request(port))
    assert response.status is Status.QUEUED  # retried by the queue, as other send failures
    cause = "negative commit" if answer == b"\x15" else "invalid acknowledgement block"
    assert response.error.startswith(
        f"TCP Sender: no MLLPv2 commit acknowledgement from 127.0.0.1:{port} after 3 attempt(s)"
    )
    assert cause in response.error
    assert seen == [b"MSH|^~\\&|V2\r"] * 3


async def test_sender_with_ignore_response_waits_only_for_the_commit(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    async def script(peer: Peer) -> None:
        await peer.frame()
        await peer.send(b"\x06")

    _, port = await scripted_server(nursery, script)
    response = await make_sender(ignoreResponse=True, **V2).send(request(port))
    assert (response.status, response.message) == (Status.SENT, "")


async def test_sender_peer_closing_before_the_commit_is_queued(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    async def script(peer: Peer) -> None:
        await peer.frame()
        await peer.stream.aclose()

    _, port = await scripted_server(nursery, script)
    response = await make_sender(**V2).send(request(port))
    assert response.status is Status.QUEUED
    assert "closed the connection without an MLLPv2 commit acknowledgement" in response.error
