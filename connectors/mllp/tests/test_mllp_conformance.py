"""The TCP Listener and TCP Sender pass the kernel's connector conformance kit."""

from __future__ import annotations

import contextlib
import socket

import trio
from pannier.testing import check_connector
from pannier_mllp import MLLPClientError, send_mllp
from pannier_mllp.plugin import pannier_register_connectors

LISTENER, SENDER = pannier_register_connectors()
MESSAGE = b"MSH|^~\\&|A|B|C|D|20260101000000||ADT^A01|1|P|2.5.1\r"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_tcp_listener_conforms() -> None:
    async def deliver(bound: tuple[str, int]) -> None:
        # The kit makes one dispatch fail on purpose: that one gets no ACK.
        with contextlib.suppress(MLLPClientError):
            await send_mllp("127.0.0.1", bound[1], [MESSAGE], timeout=5)

    await check_connector(LISTENER, properties={"host": "127.0.0.1", "port": 0}, deliver=deliver)


async def test_tcp_sender_conforms(nursery: trio.Nursery) -> None:
    async def ack_everything(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"\x0bMSH|^~\\&|ACK\rMSA|AA|1\r\x1c\x0d")

    listeners = await nursery.start(trio.serve_tcp, ack_everything, 0)
    port = listeners[0].socket.getsockname()[1]
    await check_connector(
        SENDER,
        properties={"remoteAddress": "127.0.0.1", "remotePort": str(port)},
        failing_properties={
            "remoteAddress": "127.0.0.1",
            "remotePort": str(free_port()),
            "responseTimeout": 2000,
        },
    )
