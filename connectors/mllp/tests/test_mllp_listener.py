"""The TCP Listener against real loopback sockets."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
from pannier import ChannelStoppedError, RawMessage
from pannier_mllp import LISTENER_DEFAULTS, FrameDecoder, TcpListener, encode_frame
from pannier_mllp._props import PropertyError


def ack_for(raw: RawMessage) -> str:
    content = raw.content if isinstance(raw.content, str) else raw.content.decode("latin-1")
    return f"MSH|^~\\&|ACK\rMSA|AA|{content[:20]}\r"


async def connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def read_frames(stream: trio.SocketStream, count: int, timeout: float = 5.0) -> list[bytes]:
    decoder = FrameDecoder()
    frames: list[bytes] = []
    with trio.fail_after(timeout):
        while len(frames) < count:
            data = await stream.receive_some()
            assert data, f"connection closed after {len(frames)} of {count} responses"
            frames.extend(e for e in decoder.feed(data) if isinstance(e, bytes))
    return frames


async def expect_closed(stream: trio.SocketStream, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection; returns what came before."""
    received = b""
    with trio.fail_after(timeout):
        while True:
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:  # reset instead of FIN
                return received
            if not data:
                return received
            received += data


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def test_message_in_ack_out(listen: Any, recorder_factory: Any, fixtures_dir: Path) -> None:
    recorder = recorder_factory(respond=ack_for)
    running = await listen(recorder)
    message = (fixtures_dir / "adt_a01.hl7").read_bytes()
    stream = await connect(running.port)
    await stream.send_all(encode_frame(message))
    [response] = await read_frames(stream, 1)
    assert response == ack_for(RawMessage(message.decode())).encode()
    [raw] = recorder.messages
    assert raw.content == message.decode("utf-8")  # unaltered text
    local = stream.socket.getsockname()
    assert raw.source_map == {
        "remoteAddress": "127.0.0.1",
        "remotePort": local[1],
        "localAddress": "127.0.0.1",
        "localPort": running.port,
    }
    await stream.aclose()


async def test_many_frames_on_one_connection_in_order(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory(respond=lambda raw: f"ACK {raw.content}", delay=0.001)
    running = await listen(recorder)
    stream = await connect(running.port)
    messages = [f"MSH|^~\\&|{i}\r" for i in range(200)]
    await stream.send_all(b"".join(encode_frame(m.encode()) for m in messages))  # one write
    responses = await read_frames(stream, 200)
    assert responses == [f"ACK {m}".encode() for m in messages]
    assert [m.content for m in recorder.messages] == messages
    # Strictly one at a time per connection: the next frame is read after the response.
    assert set(recorder.max_active_per_client.values()) == {1}
    await stream.aclose()


async def test_frames_split_byte_by_byte(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory(respond=lambda raw: "ACK " + str(raw.content))
    running = await listen(recorder)
    stream = await connect(running.port)
    data = encode_frame(b"MSH|one\r") + encode_frame(b"MSH|two\r")
    for byte in data:
        await stream.send_all(bytes([byte]))
        await trio.sleep(0.001)
    assert await read_frames(stream, 2) == [b"ACK MSH|one\r", b"ACK MSH|two\r"]
    await stream.aclose()


async def test_garbage_between_frames_is_skipped(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)
    stream = await connect(running.port)
    await stream.send_all(
        b"\r\nhello\x00\xff"
        + encode_frame(b"MSH|1\r")
        + b"\n\n\x1c\x0d garbage \x1c"
        + encode_frame(b"MSH|2\r")
        + b"\r\n"
    )
    assert await read_frames(stream, 2) == [b"ACK", b"ACK"]
    assert [m.content for m in recorder.messages] == ["MSH|1\r", "MSH|2\r"]
    await stream.aclose()


async def test_oversized_frame_is_rejected_and_the_listener_carries_on(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, maxFrameSize=1000)
    big = await connect(running.port)
    await big.send_all(encode_frame(b"x" * 5000))
    assert await expect_closed(big) == b""  # no response, connection closed
    # A frame that never ends is cut off as soon as it passes the limit.
    endless = await connect(running.port)
    with trio.move_on_after(2), contextlib.suppress(trio.BrokenResourceError):
        await endless.send_all(b"\x0b" + b"y" * 2000)
    assert await expect_closed(endless) == b""
    assert recorder.messages == []
    good = await connect(running.port)
    await good.send_all(encode_frame(b"x" * 1000))  # exactly at the limit
    assert await read_frames(good, 1) == [b"ACK"]
    assert recorder.messages[0].content == "x" * 1000
    await good.aclose()


def _abort(stream: trio.SocketStream) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a clean FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def test_abusive_clients_never_take_the_listener_down(recorder_factory: Any) -> None:
    recorder = recorder_factory()
    states: list[tuple[str, dict[str, Any]]] = []
    listener = TcpListener(
        _setup({**LISTENER_DEFAULTS, "host": "127.0.0.1", "port": 0, "maxConnections": 50}, states)
    )
    rng = random.Random(7)

    async def misbehave(index: int, port: int) -> None:
        try:
            stream = await connect(port)
        except OSError:
            return
        kind = index % 5
        try:
            if kind == 0:
                pass  # connect and drop
            elif kind == 1:
                await stream.send_all(
                    bytes(rng.randrange(256) for _ in range(300)).replace(b"\x0b", b"")
                )
            elif kind == 2:
                await stream.send_all(b"\x0bMSH|^~\\&|half a frame")
            elif kind == 3:
                await stream.send_all(b"\x0b\x1c\x1c\x0b\x0b")
                _abort(stream)
                return
            else:
                _abort(stream)
                return
        except (trio.BrokenResourceError, OSError):
            pass
        await trio.aclose_forcefully(stream)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(listener.run, recorder)
            async with trio.open_nursery() as clients:
                for index in range(200):
                    clients.start_soon(misbehave, index, port)
            # Every abusive connection is gone: no task is left behind.
            await wait_until(lambda: listener._connections == 0)
            assert recorder.messages == []
            # The listener still serves a good client.
            stream = await connect(port)
            await stream.send_all(encode_frame(b"MSH|^~\\&|good\r"))
            assert await read_frames(stream, 1) == [b"ACK"]
            await stream.aclose()
            await wait_until(lambda: listener._connections == 0)
            nursery.cancel_scope.cancel()
        # run() returned once cancelled: the nursery could exit, so no task leaked.
    assert [m.content for m in recorder.messages] == ["MSH|^~\\&|good\r"]
    assert states[-1] == ("idle", {"connections": 0})
    with pytest.raises(OSError):
        await connect(port)  # the listening socket is closed


async def test_max_connections_is_respected(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, maxConnections=2)
    first, second = await connect(running.port), await connect(running.port)
    await wait_until(lambda: running.listener._connections == 2)
    third = await connect(running.port)  # completes in the backlog, but is not served yet
    await third.send_all(encode_frame(b"MSH|third\r"))
    await trio.sleep(0.3)
    assert running.listener._connections == 2
    assert recorder.messages == []
    await first.aclose()  # a slot frees: the waiting client is served
    assert await read_frames(third, 1) == [b"ACK"]
    assert running.listener._connections == 2
    await second.aclose()
    await third.aclose()
    await wait_until(lambda: running.listener._connections == 0)


async def test_half_frame_then_stall_with_receive_timeout(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, receiveTimeout=200)
    staller = await connect(running.port)
    await staller.send_all(b"\x0bMSH|^~\\&|never finished")
    other = await connect(running.port)  # not blocked by the staller
    await other.send_all(encode_frame(b"MSH|other\r"))
    assert await read_frames(other, 1) == [b"ACK"]
    assert await expect_closed(staller, timeout=3) == b""
    assert [m.content for m in recorder.messages] == ["MSH|other\r"]
    # An idle kept-open connection survives the receive timeout (Mirth keeps it).
    await trio.sleep(0.5)
    await other.send_all(encode_frame(b"MSH|again\r"))
    assert await read_frames(other, 1) == [b"ACK"]
    await other.aclose()


async def test_half_frame_then_stall_without_receive_timeout(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)  # receiveTimeout 0: wait as long as it takes
    staller = await connect(running.port)
    await staller.send_all(b"\x0bMSH|^~\\&|slow")
    other = await connect(running.port)
    await other.send_all(encode_frame(b"MSH|other\r"))
    assert await read_frames(other, 1) == [b"ACK"]
    await trio.sleep(0.2)
    await staller.send_all(b" client\r\x1c\x0d")  # the staller finishes eventually
    assert await read_frames(staller, 1) == [b"ACK"]
    assert [m.content for m in recorder.messages] == ["MSH|other\r", "MSH|^~\\&|slow client\r"]
    await staller.aclose()
    await other.aclose()


async def test_disconnect_mid_frame_processes_nothing(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)
    stream = await connect(running.port)
    await stream.send_all(encode_frame(b"MSH|whole\r") + b"\x0bMSH|trunc")
    assert await read_frames(stream, 1) == [b"ACK"]
    await stream.aclose()
    await wait_until(lambda: running.listener._connections == 0)
    assert [m.content for m in recorder.messages] == ["MSH|whole\r"]


async def test_dispatch_failure_closes_only_that_connection(
    listen: Any, recorder_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(raw: RawMessage) -> BaseException | None:
        if "BOOM" in str(raw.content):
            return RuntimeError("the channel broke")
        if "STOP" in str(raw.content):
            return ChannelStoppedError("stopping")
        return None

    recorder = recorder_factory(fail=fail)
    running = await listen(recorder)
    bystander = await connect(running.port)
    for word in ("BOOM", "STOP"):
        stream = await connect(running.port)
        await stream.send_all(encode_frame(f"MSH|{word}\r".encode()) + encode_frame(b"MSH|n\r"))
        assert await expect_closed(stream) == b""  # no response, and the next frame is unread
    assert "the channel broke" in caplog.text
    assert [m.content for m in recorder.messages] == ["MSH|BOOM\r", "MSH|STOP\r"]
    await bystander.send_all(encode_frame(b"MSH|fine\r"))
    assert await read_frames(bystander, 1) == [b"ACK"]
    await bystander.aclose()


async def test_no_response_or_empty_response_writes_nothing(
    listen: Any, recorder_factory: Any
) -> None:
    answers = iter([None, "", "ACK3"])
    recorder = recorder_factory(respond=lambda raw: next(answers))
    running = await listen(recorder)
    stream = await connect(running.port)
    for i in range(3):
        await stream.send_all(encode_frame(b"MSH|%d\r" % i))
    assert await read_frames(stream, 1) == [b"ACK3"]  # the first frame written is the third
    assert len(recorder.messages) == 3
    await stream.aclose()


async def test_keep_connection_open_false_closes_after_one_message(
    listen: Any, recorder_factory: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, keepConnectionOpen="false")  # Mirth's string form
    stream = await connect(running.port)
    await stream.send_all(encode_frame(b"MSH|1\r") + encode_frame(b"MSH|2\r"))
    rest = await expect_closed(stream)
    assert FrameDecoder().feed(rest) == [b"ACK"]
    assert [m.content for m in recorder.messages] == ["MSH|1\r"]


async def test_invalid_bytes_are_passed_on_unaltered(
    listen: Any, recorder_factory: Any, fixtures_dir: Path
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)
    payload = (fixtures_dir / "bad_binary.hl7").read_bytes()
    stream = await connect(running.port)
    await stream.send_all(encode_frame(payload))
    assert await read_frames(stream, 1) == [b"ACK"]
    [raw] = recorder.messages
    assert raw.content == payload  # bytes, exactly as received
    assert "not valid utf-8" in raw.source_map["charsetError"]
    assert "0x80 at offset" in raw.source_map["charsetError"]
    await stream.aclose()


async def test_charset_and_binary_modes(listen: Any, recorder_factory: Any) -> None:
    latin = recorder_factory(respond=lambda raw: "ACK é")
    running = await listen(latin, charsetEncoding="ISO-8859-1")
    stream = await connect(running.port)
    await stream.send_all(encode_frame("PID|Zoë\r".encode("latin-1")))
    assert await read_frames(stream, 1) == ["ACK é".encode("latin-1")]
    assert latin.messages[0].content == "PID|Zoë\r"
    await stream.aclose()

    binary = recorder_factory()
    running = await listen(binary, dataTypeBinary=True)
    stream = await connect(running.port)
    await stream.send_all(encode_frame(b"PK\x03\x04\x00"))
    assert await read_frames(stream, 1) == [b"ACK"]
    assert binary.messages[0].content == b"PK\x03\x04\x00"
    assert "charsetError" not in binary.messages[0].source_map
    await stream.aclose()


async def test_custom_frame_bytes(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, startOfMessageBytes="02", endOfMessageBytes="03")
    stream = await connect(running.port)
    await stream.send_all(b"\x02MSH|x\r\x03")
    with trio.fail_after(5):
        assert await stream.receive_some() == b"\x02ACK\x03"
    await stream.aclose()


async def test_state_reports(listen: Any, recorder_factory: Any) -> None:
    running = await listen(recorder_factory())
    stream = await connect(running.port)
    await stream.send_all(encode_frame(b"MSH|1\r"))
    await read_frames(stream, 1)
    await stream.aclose()
    await wait_until(lambda: running.listener._connections == 0)
    calls = running.states.calls
    assert calls[0] == ("idle", {"connections": 0})
    assert calls[1][0] == "connected" and calls[1][1]["connections"] == 1
    assert calls[2][0] == "receiving" and calls[2][1]["connections"] == 1
    assert calls[3] == ("idle", {"connections": 1})
    assert calls[-1] == ("idle", {"connections": 0})


async def test_cancellation_closes_everything_promptly(recorder_factory: Any) -> None:
    listener = TcpListener(_setup({**LISTENER_DEFAULTS, "host": "127.0.0.1", "port": 0}))
    blocked = recorder_factory(delay=3600)  # a dispatch that never finishes
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(listener.run, blocked)
            idle = await connect(port)
            busy = await connect(port)
            await busy.send_all(encode_frame(b"MSH|stuck\r"))
            await blocked.wait_for(1)
            nursery.cancel_scope.cancel()
        assert await expect_closed(idle) == b""
        assert await expect_closed(busy) == b""
    with pytest.raises(OSError):
        await connect(port)


async def test_bind_failure_is_a_clear_error(listen: Any) -> None:
    running = await listen()
    listener = TcpListener(_setup({**LISTENER_DEFAULTS, "host": "127.0.0.1", "port": running.port}))
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{running.port}"):
        await listener.run(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"port": "abc"}, "'port': 'abc' is not a whole number"),
        ({"port": 70000}, "above the maximum"),
        ({"maxConnections": 0}, "below the minimum"),
        ({"keepConnectionOpen": "maybe"}, "not a boolean"),
        ({"charsetEncoding": "no-such-charset"}, "unknown charset"),
        ({"startOfMessageBytes": "ZZ"}, "startOfMessageBytes"),
        ({"endOfMessageBytes": ""}, "must not be empty"),
        ({"serverMode": False}, "client mode"),
        ({"respondOnNewConnection": 1}, "new connection"),
        ({"useMLLPv2": "true", "ackBytes": "GG"}, "ackBytes"),
        ({"useMLLPv2": "true", "nackBytes": "06"}, "must be non-empty and different"),
        ({"tlsEnabled": "true"}, "'tlsCertFile' is empty"),
        ({"tlsCaFile": "/etc/ca.pem"}, "tlsEnabled is false"),
    ],
)
def test_bad_properties_are_refused(props: dict[str, Any], message: str) -> None:
    with pytest.raises(PropertyError, match=message):
        TcpListener(_setup({**LISTENER_DEFAULTS, **props}))


def test_mirth_string_values_are_accepted() -> None:
    listener = TcpListener(
        _setup(
            {
                **LISTENER_DEFAULTS,
                "port": "6661",
                "maxConnections": "10",
                "receiveTimeout": "0",
                "keepConnectionOpen": "true",
                "charsetEncoding": "DEFAULT_ENCODING",
            }
        )
    )
    assert (listener.port, listener.max_connections, listener.keep_connection_open) == (
        6661,
        10,
        True,
    )
    assert listener.charset == "utf-8" and listener.receive_timeout == 0


def _setup(props: dict[str, Any], states: list[Any] | None = None) -> Any:
    from pannier import ConnectorSetup

    def report(state: str, details: Any) -> None:
        if states is not None:
            states.append((state, dict(details)))

    return ConnectorSetup(
        channel_id="c",
        channel_name="mllp test",
        metadata_id=0,
        name="Source",
        properties=props,
        report_state=report,
    )


async def test_listening_on_a_host_name(recorder_factory: Any) -> None:
    listener = TcpListener(_setup({**LISTENER_DEFAULTS, "host": "localhost", "port": 0}))
    recorder = recorder_factory()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(listener.run, recorder)
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(encode_frame(b"MSH|x\r"))
            assert await read_frames(stream, 1) == [b"ACK"]
            await stream.aclose()
            nursery.cancel_scope.cancel()
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)
