"""The TCP Sender against the TCP Listener and against misbehaving servers."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from pannier import SendRequest, Status
from pannier_mllp import FrameDecoder, TcpSender, encode_frame
from pannier_mllp._props import PropertyError

Handler = Callable[[trio.SocketStream], Awaitable[None]]


def request(encoded: str | bytes = "MSH|^~\\&|SENDER\r", **properties: Any) -> SendRequest:
    return SendRequest(
        channel_id="c", message_id=1, metadata_id=1, encoded=encoded, properties=properties
    )


def props(port: int, **extra: Any) -> dict[str, Any]:
    return {"remoteAddress": "127.0.0.1", "remotePort": port, "template": "", **extra}


class FakeServer:
    """A TCP server whose behaviour per connection is a test-supplied handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.received: list[bytes] = []

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.handler(stream)


async def start_server(nursery: trio.Nursery, handler: Handler) -> tuple[FakeServer, int]:
    server = FakeServer(handler)
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"), server.serve, 0
    )
    return server, listeners[0].socket.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_round_trip_through_the_listener(
    listen: Any, recorder_factory: Any, make_sender: Any
) -> None:
    recorder = recorder_factory(respond=lambda raw: "MSH|^~\\&|ACK\rMSA|AA|1\r")
    running = await listen(recorder)
    sender: TcpSender = make_sender()
    await sender.start()
    message = "MSH|^~\\&|A|B\rPID|1||Zoë\r"
    response = await sender.send(
        request(message, **props(str(running.port), template=message))  # port as rendered text
    )
    assert response.status is Status.SENT
    assert response.message == "MSH|^~\\&|ACK\rMSA|AA|1\r"
    assert response.status_message == "Message successfully sent."
    assert [m.content for m in recorder.messages] == [message]
    await sender.stop()


async def test_empty_or_unrendered_template_sends_the_encoded_message(
    listen: Any, recorder_factory: Any, make_sender: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)
    sender = make_sender()
    for template in ("", None, "${message.encodedData}"):
        response = await sender.send(request("MSH|enc\r", **props(running.port, template=template)))
        assert response.status is Status.SENT, response
    response = await sender.send(request("MSH|enc\r", **props(running.port, template="T|x\r")))
    assert response.status is Status.SENT
    assert [m.content for m in recorder.messages] == ["MSH|enc\r"] * 3 + ["T|x\r"]


async def test_closed_port_is_a_clear_failure(make_sender: Any) -> None:
    port = free_port()
    response = await make_sender().send(request(**props(port)))
    # Mirth's TcpDispatcher leaves connection failures QUEUED; the kernel makes that ERROR when
    # the destination's queue is off (Mirth's DestinationConnector does the same).
    assert response.status is Status.QUEUED
    assert response.error == (
        f"TCP Sender could not connect to 127.0.0.1:{port}: Connection refused"
    )
    assert f"127.0.0.1:{port}" in response.status_message


async def test_unknown_host_is_a_clear_failure(make_sender: Any) -> None:
    response = await make_sender().send(
        request(remoteAddress="no-such-host.invalid", remotePort=6660, template="")
    )
    assert response.status is Status.QUEUED
    assert "no-such-host.invalid:6660" in response.error


@pytest.mark.parametrize(("queue_on_timeout", "expected"), [(True, "Q"), (False, "E")])
async def test_response_timeout(
    nursery: trio.Nursery, make_sender: Any, queue_on_timeout: bool, expected: str
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    _, port = await start_server(nursery, silent)
    sender = make_sender(responseTimeout=200, queueOnResponseTimeout=queue_on_timeout)
    with trio.fail_after(3):
        response = await sender.send(request(**props(port)))
    assert response.status.value == expected
    assert response.status_message == "Timeout waiting for response"
    assert response.error == (
        f"TCP Sender: timeout waiting for a response from 127.0.0.1:{port} after 200 ms"
    )


async def test_ignore_response_does_not_wait(nursery: trio.Nursery, make_sender: Any) -> None:
    got = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        got.set()
        await trio.sleep_forever()

    _, port = await start_server(nursery, silent)
    with trio.fail_after(2):
        response = await make_sender(ignoreResponse=True).send(request(**props(port)))
        await got.wait()
    assert response.status is Status.SENT and response.message == ""


async def test_peer_closing_without_a_response(nursery: trio.Nursery, make_sender: Any) -> None:
    async def rude(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.aclose()

    _, port = await start_server(nursery, rude)
    response = await make_sender().send(request(**props(port)))
    # Mirth 4.x: the message went out, so SENT, with the fact in the status message.
    assert response.status is Status.SENT
    assert response.status_message == "Message successfully sent, but no response received."


async def test_peer_closing_mid_response(nursery: trio.Nursery, make_sender: Any) -> None:
    async def truncating(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"\x0bMSH|^~\\&|ACK\rMSA|A")
        await stream.aclose()

    _, port = await start_server(nursery, truncating)
    response = await make_sender().send(request(**props(port)))
    assert response.status is Status.QUEUED
    assert "in the middle of its response" in response.error


async def test_keep_connection_open_reuses_and_reconnects(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    drop_after_first = trio.Event()

    async def acker(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        while True:
            data = await stream.receive_some()
            if not data:
                return
            for payload in decoder.feed(data):
                assert isinstance(payload, bytes)
                server.received.append(payload)
                await stream.send_all(encode_frame(b"ACK " + payload))
                if payload == b"drop":
                    drop_after_first.set()
                    await stream.aclose()
                    return

    server, port = await start_server(nursery, acker)
    sender = make_sender(keepConnectionOpen=True, sendTimeout=0)
    for text in ("one", "two", "drop"):
        response = await sender.send(request(text, **props(port)))
        assert response.status is Status.SENT and response.message == f"ACK {text}"
    assert server.connections == 1  # one connection carried all three
    await drop_after_first.wait()
    await trio.sleep(0.05)
    response = await sender.send(request("four", **props(port)))  # the old one is dead
    assert response.status is Status.SENT and response.message == "ACK four"
    assert server.connections == 2
    assert server.received == [b"one", b"two", b"drop", b"four"]
    await sender.stop()


async def test_without_keep_connection_open_each_message_connects(
    listen: Any, recorder_factory: Any, make_sender: Any
) -> None:
    running = await listen(recorder_factory())
    sender = make_sender()
    for _ in range(3):
        assert (await sender.send(request(**props(running.port)))).status is Status.SENT
    await trio.sleep(0.05)
    assert running.listener._connections == 0


async def test_send_timeout_closes_idle_kept_connections(
    nursery: trio.Nursery, make_sender: Any
) -> None:
    closed = trio.Event()

    async def acker(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        while data := await stream.receive_some():
            for _ in decoder.feed(data):
                await stream.send_all(encode_frame(b"ACK"))
        closed.set()

    server, port = await start_server(nursery, acker)
    sender = make_sender(keepConnectionOpen=True, sendTimeout=100)
    assert (await sender.send(request(**props(port)))).status is Status.SENT
    assert (await sender.send(request(**props(port)))).status is Status.SENT
    assert server.connections == 1
    await trio.sleep(0.2)  # idle longer than sendTimeout: not reused
    assert (await sender.send(request(**props(port)))).status is Status.SENT
    assert server.connections == 2
    await sender.stop()  # closes the kept connection
    with trio.fail_after(2):
        await closed.wait()


@pytest.mark.parametrize(
    ("encoded", "extra", "message"),
    [
        ("a\x1c\rb", {}, "end-of-message bytes 1C0D"),
        ("Zoë", {"charsetEncoding": "US-ASCII"}, "cannot encode"),
        ("not base64!", {"dataTypeBinary": True}, "not valid Base64"),
    ],
)
async def test_unsendable_messages_are_errors(
    make_sender: Any, encoded: str, extra: dict[str, Any], message: str
) -> None:
    response = await make_sender(**extra).send(request(encoded, **props(1)))
    assert response.status is Status.ERROR
    assert message in response.error


async def test_binary_template_is_base64(
    listen: Any, recorder_factory: Any, make_sender: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, dataTypeBinary=True)
    response = await make_sender(dataTypeBinary=True).send(
        request("AAEC/w==", **props(running.port))
    )
    assert response.status is Status.SENT
    assert recorder.messages[0].content == b"\x00\x01\x02\xff"


@pytest.mark.parametrize(
    ("port", "message"),
    [("abc", "'remotePort': 'abc' is not a whole number"), ("0", "below the minimum")],
)
async def test_bad_rendered_port_is_an_error(make_sender: Any, port: str, message: str) -> None:
    response = await make_sender().send(request(**props(6660, remotePort=port)))
    assert response.status is Status.ERROR
    assert message in response.error


async def test_state_reports(listen: Any, recorder_factory: Any) -> None:
    from pannier import ConnectorSetup

    running = await listen(recorder_factory())
    calls: list[tuple[str, dict[str, Any]]] = []
    sender = TcpSender(
        ConnectorSetup("c", "n", 1, "d1", {}, lambda s, d: calls.append((s, dict(d))))
    )
    await sender.send(request(**props(running.port)))
    assert calls == [
        ("sending", {"remoteAddress": f"127.0.0.1:{running.port}"}),
        ("idle", {}),
    ]


def test_bad_static_properties_are_refused(make_sender: Any) -> None:
    with pytest.raises(PropertyError, match="maxRetries"):
        make_sender(useMLLPv2=True, maxRetries=-1)
    with pytest.raises(PropertyError, match="'tlsKeyFile' is set but 'tlsCertFile' is empty"):
        make_sender(tlsEnabled=True, tlsKeyFile="/etc/key.pem")
    with pytest.raises(PropertyError, match="localPort"):
        make_sender(overrideLocalBinding=True, localPort=5000)
    with pytest.raises(PropertyError, match="responseTimeout"):
        make_sender(responseTimeout="soon")


async def test_kept_connection_reset_unnoticed_is_retried_once(
    nursery: trio.Nursery, make_sender: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import struct

    import pannier_mllp.sender as sender_module

    # Pretend the pre-send liveness check missed the reset, so the write itself fails.
    monkeypatch.setattr(sender_module, "peer_closed_or_talking", lambda stream: False)

    async def ack_once_then_reset(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(encode_frame(b"ACK"))
        await trio.sleep(0.05)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    server, port = await start_server(nursery, ack_once_then_reset)
    sender = make_sender(keepConnectionOpen=True, sendTimeout=0)
    assert (await sender.send(request(**props(port)))).message == "ACK"
    await trio.sleep(0.2)
    response = await sender.send(request(**props(port)))
    assert response.status is Status.SENT and response.message == "ACK"
    assert server.connections == 2
    await sender.stop()
