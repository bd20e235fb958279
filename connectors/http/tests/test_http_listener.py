"""The HTTP Listener against real loopback sockets."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import trio
from pannier import ChannelStoppedError, Response, Status
from pannier_http import LISTENER_DEFAULTS, HttpListener
from pannier_http._props import PropertyError


async def read_all(stream: trio.SocketStream, timeout: float = 5.0) -> bytes:
    received = b""
    with trio.fail_after(timeout):
        while True:
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:
                return received
            if not data:
                return received
            received += data


async def test_post_body_in_response_out(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory(
        respond=lambda raw: Response(Status.SENT, message="ACK " + raw.content)
    )
    port = await listen(recorder, contextPath="/hl7", responseHeaders={"X-Engine": "pannier"})
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"http://127.0.0.1:{port}/hl7/adt?a=1&a=2&b=x",
            content="MSH|^~\\&|é".encode(),
            headers={"X-Custom": "v"},
        )
    assert reply.status_code == 200
    assert reply.text == "ACK MSH|^~\\&|é"
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.headers["x-engine"] == "pannier"
    (raw,) = recorder.messages
    assert raw.content == "MSH|^~\\&|é"
    sm = raw.source_map
    assert sm["method"] == "POST"
    assert sm["uri"] == "/hl7/adt"
    assert sm["contextPath"] == "/hl7/adt"
    assert sm["query"] == "a=1&a=2&b=x"
    assert sm["parameters"] == {"a": ["1", "2"], "b": ["x"]}
    assert sm["headers"]["X-Custom"] == ["v"]
    assert sm["remoteAddress"] == "127.0.0.1"
    assert sm["url"] == f"http://127.0.0.1:{port}/hl7/adt"


async def test_error_response_gives_500_and_no_response_gives_empty_200(
    listen: Any, recorder_factory: Any
) -> None:
    answers = iter([Response(Status.ERROR, message="bad"), None])
    port = await listen(recorder_factory(respond=lambda raw: next(answers)))
    async with httpx.AsyncClient() as client:
        first = await client.post(f"http://127.0.0.1:{port}/", content="x")
        second = await client.post(f"http://127.0.0.1:{port}/", content="y")
    assert (first.status_code, first.text) == (500, "bad")
    assert (second.status_code, second.text) == (200, "")


async def test_configured_status_code(listen: Any, recorder_factory: Any) -> None:
    port = await listen(recorder_factory(), responseStatusCode="202")
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{port}/", content="x")
    assert reply.status_code == 202


async def test_outside_context_path_is_404(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder, contextPath="api/")
    async with httpx.AsyncClient() as client:
        outside = await client.post(f"http://127.0.0.1:{port}/apix", content="x")
        inside = await client.post(f"http://127.0.0.1:{port}/api", content="y")
    assert outside.status_code == 404
    assert inside.status_code == 200
    assert [m.content for m in recorder.messages] == ["y"]


async def test_body_too_large_is_413(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder, maxBodySize=1000)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 500

    async with httpx.AsyncClient() as client:
        by_length = await client.post(f"http://127.0.0.1:{port}/", content=b"x" * 1001)
        assert by_length.status_code == 413
        exact = await client.post(f"http://127.0.0.1:{port}/", content=b"x" * 1000)
        assert exact.status_code == 200
    async with httpx.AsyncClient() as client:
        try:
            chunked = await client.post(f"http://127.0.0.1:{port}/", content=chunks())
            assert chunked.status_code == 413
        except httpx.TransportError:
            pass  # the server may close before the client finished writing
    assert len(recorder.messages) == 1


async def test_channel_stopped_is_503(listen: Any, recorder_factory: Any) -> None:
    port = await listen(recorder_factory(fail=ChannelStoppedError("stopping")))
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{port}/", content="x")
    assert reply.status_code == 503


async def test_garbage_gets_400_and_listener_lives(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"\x00\xff garbage \r\n\r\n")
    answer = await read_all(stream)
    assert answer.startswith(b"HTTP/1.1 400")
    await stream.aclose()
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{port}/", content="ok")
    assert reply.status_code == 200


async def test_keep_alive_two_requests_one_connection(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory(respond=lambda raw: Response(Status.SENT, message=raw.content))
    port = await listen(recorder)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo"
    )
    await stream.send_all(request)
    answer = await read_all(stream)
    assert answer.count(b"HTTP/1.1 200") == 2
    assert answer.endswith(b"two")
    assert b"one" in answer
    assert [m.content for m in recorder.messages] == ["one", "two"]


async def test_survives_abrupt_connections(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    states: list[Any] = []
    port = await listen(recorder, states)
    rng = random.Random(5)
    fragments = [
        b"",
        b"POST / HTTP/1.1\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        bytes(rng.randrange(256) for _ in range(64)),
    ]
    for i in range(200):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(fragments[i % len(fragments)])
        await stream.aclose()
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{port}/", content="still here")
    assert reply.status_code == 200
    assert [m.content for m in recorder.messages] == ["still here"]
    with trio.fail_after(5):
        while states[-1][1]["connections"] != 0:
            await trio.sleep(0.01)
    assert states[-1][0] == "idle"


async def test_charset_from_request_and_binary_mime(listen: Any, recorder_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder)
    async with httpx.AsyncClient() as client:
        await client.post(
            f"http://127.0.0.1:{port}/",
            content="é".encode("latin-1"),
            headers={"Content-Type": "text/plain; charset=ISO-8859-1"},
        )
        await client.post(
            f"http://127.0.0.1:{port}/",
            content=b"\x89PNG",
            headers={"Content-Type": "image/png"},
        )
    assert recorder.messages[0].content == "é"
    assert recorder.messages[1].content == b"\x89PNG"


async def test_unsupported_properties_refused(setup_factory: Any) -> None:
    with pytest.raises(PropertyError):
        HttpListener(setup_factory(LISTENER_DEFAULTS, xmlBody=True))
    with pytest.raises(PropertyError):
        HttpListener(setup_factory(LISTENER_DEFAULTS, staticResources=[{"x": 1}]))


async def test_idle_connection_closed_after_timeout(listen: Any, recorder_factory: Any) -> None:
    port = await listen(recorder_factory(), timeout=200)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    with trio.fail_after(3):
        assert await read_all(stream) == b""
