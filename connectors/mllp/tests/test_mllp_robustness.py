"""The TCP Listener under thousands of malformed, half-sent and abruptly closed connections
(real loopback sockets): nothing crashes, no task is left behind, good clients are served."""

from __future__ import annotations

import logging
import random
import socket
import struct
from typing import Any

import pytest
import trio
from pannier import ConnectorSetup
from pannier_mllp import LISTENER_DEFAULTS, FrameDecoder, TcpListener, encode_frame

KINDS = 8
FULL_FRAME_KIND = 7  # the one kind that sends a complete message (then hangs up)


def _abort(stream: trio.SocketStream) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a clean FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def misbehave(index: int, port: int, rng: random.Random) -> None:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return
    kind = index % KINDS
    # Random bytes with no start byte and no end sequence: they never make a message.
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    noise = noise.replace(b"\x0b", b"").replace(b"\x1c", b"")
    try:
        if kind == 0:
            pass  # connect and hang up
        elif kind == 1:
            _abort(stream)  # connect and reset
            return
        elif kind == 2:
            await stream.send_all(noise)  # bytes outside any frame
        elif kind == 3:
            await stream.send_all(b"\x0bMSH|^~\\&|half a frame" + noise)  # FIN mid-frame
        elif kind == 4:
            await stream.send_all(b"\x0bMSH|^~\\&|half" + noise)
            _abort(stream)  # reset mid-frame
            return
        elif kind == 5:
            await stream.send_all(b"\x0b" + b"x" * 3000)  # past maxFrameSize
        elif kind == 6:
            await stream.send_all(noise + b"\x1c\x0d\x1c\x0b\x0b\x1c")
            _abort(stream)
            return
        else:
            await stream.send_all(encode_frame(b"MSH|^~\\&|%d\r" % index))  # and leave
    except (trio.BrokenResourceError, OSError):
        pass
    await trio.aclose_forcefully(stream)


def _setup(props: dict[str, Any]) -> ConnectorSetup:
    return ConnectorSetup(
        channel_id="c",
        channel_name="robustness",
        metadata_id=0,
        name="Source",
        properties=props,
        report_state=lambda state, details: None,
    )


def connection_tasks(outer: trio.Nursery) -> list[str]:
    """Names of the tasks the running listener has besides its accept loop(s)."""
    [run_task] = outer.child_tasks
    [inner] = run_task.child_nurseries
    return [task.name for task in inner.child_tasks if not task.name.endswith("_accept_loop")]


@pytest.mark.parametrize(("tls", "count"), [(False, 2000), (True, 400)])
async def test_thousands_of_bad_connections(
    recorder_factory: Any, request: Any, caplog: Any, tls: bool, count: int
) -> None:
    pki = request.getfixturevalue("pki") if tls else None  # trustme only for the TLS run
    caplog.set_level(logging.INFO, logger="pannier.mllp")
    recorder = recorder_factory(respond=lambda raw: "MSH|^~\\&|ACK\rMSA|AA|1\r")
    props = {
        **LISTENER_DEFAULTS,
        "host": "127.0.0.1",
        "port": 0,
        "maxConnections": 300,
        "maxFrameSize": 1024,
    }
    if pki is not None:
        props.update(pki.listener())
    listener = TcpListener(_setup(props))
    rng = random.Random(2026)
    batch = 200
    with trio.fail_after(300):  # a guard against hangs only
        async with trio.open_nursery() as outer:
            _, port = await outer.start(listener.run, recorder)
            for first in range(0, count, batch):
                async with trio.open_nursery() as clients:
                    for index in range(first, min(first + batch, count)):
                        clients.start_soon(misbehave, index, port, rng)
            # Every connection is gone, and so is every task that served one.
            while listener.connections or connection_tasks(outer):
                await trio.sleep(0.01)
            # A good client still gets its AA.
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            if pki is not None:
                import ssl

                context = ssl.create_default_context(cafile=pki.ca)
                stream = trio.SSLStream(stream, context, server_hostname="127.0.0.1")
            await stream.send_all(encode_frame(b"MSH|^~\\&|good\r"))
            decoder, frames = FrameDecoder(), []
            while not frames:
                data = await stream.receive_some()
                assert data, "the listener closed a good connection"
                frames = decoder.feed(data)
            assert frames == [b"MSH|^~\\&|ACK\rMSA|AA|1\r"]
            await stream.aclose()
            while listener.connections:
                await trio.sleep(0.01)
            outer.cancel_scope.cancel()
    # No exception escaped a connection task (run() would have raised it) or was logged.
    assert not [r for r in caplog.records if r.exc_info], "a connection raised unexpectedly"
    complete = 0 if tls else len(range(FULL_FRAME_KIND, count, KINDS))
    assert len(recorder.messages) == complete + 1  # no half message was ever processed
    assert recorder.messages[-1].content == "MSH|^~\\&|good\r"
