"""The HTTP Listener and HTTP Sender pass the kernel's connector conformance kit."""

from __future__ import annotations

import socket

import httpx
import trio
from pannier.testing import check_connector
from pannier_http.plugin import pannier_register_connectors

LISTENER, SENDER = pannier_register_connectors()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_http_listener_conforms() -> None:
    async def deliver(bound: tuple[str, int]) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(f"http://127.0.0.1:{bound[1]}/", content=b"hello")

    await check_connector(LISTENER, properties={"host": "127.0.0.1", "port": 0}, deliver=deliver)


async def test_http_sender_conforms(nursery: trio.Nursery) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )

    listeners = await nursery.start(trio.serve_tcp, answer, 0)
    port = listeners[0].socket.getsockname()[1]
    await check_connector(
        SENDER,
        properties={"host": f"http://127.0.0.1:{port}/in"},
        failing_properties={"host": f"http://127.0.0.1:{free_port()}/in", "socketTimeout": 2000},
    )
