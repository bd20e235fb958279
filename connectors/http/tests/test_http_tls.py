"""HTTPS and mutual TLS between the HTTP Sender and the HTTP Listener on loopback, with
certificates made at test time (trustme)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from pannier import Response, SendRequest, Status
from pannier_http import SENDER_DEFAULTS, HttpSender


async def send(setup_factory: Any, url: str, **props: Any) -> Response:
    sender = HttpSender(setup_factory(SENDER_DEFAULTS, socketTimeout=5000, **props))
    await sender.start()
    try:
        request = SendRequest(
            channel_id="c1",
            message_id=1,
            metadata_id=1,
            encoded="MSH|x",
            properties={**SENDER_DEFAULTS, "content": "MSH|x", "host": url, **props},
        )
        return await sender.send(request)
    finally:
        await sender.stop()


async def test_https_round_trip(
    listen: Any, recorder_factory: Any, setup_factory: Any, pki: Any
) -> None:
    recorder = recorder_factory(respond=lambda raw: Response(Status.SENT, message="ACK"))
    port = await listen(recorder, **pki.listener())
    url = f"https://127.0.0.1:{port}/in"
    response = await send(setup_factory, url, **pki.sender())
    assert (response.status, response.message) == (Status.SENT, "ACK")
    [raw] = recorder.messages
    assert raw.content == "MSH|x"
    assert raw.source_map["url"] == f"https://127.0.0.1:{port}/in"


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_mutual_tls_with_a_client_certificate(
    listen: Any, recorder_factory: Any, setup_factory: Any, pki: Any, mode: str
) -> None:
    port = await listen(recorder_factory(), **pki.listener(mode))
    response = await send(
        setup_factory,
        f"https://localhost:{port}/",
        **pki.sender("client"),
    )
    assert (response.status, response.message) == (Status.SENT, "OK")


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    listen: Any, recorder_factory: Any, setup_factory: Any, pki: Any
) -> None:
    recorder = recorder_factory()
    props = pki.listener("required")
    port = await listen(recorder, **props)
    url = f"https://127.0.0.1:{port}/"
    refused = await send(setup_factory, url, **pki.sender())
    stranger = await send(
        setup_factory,
        url,
        **pki.sender("stranger"),
    )
    for response in (refused, stranger):
        assert response.status is Status.QUEUED, response
        assert url in response.error and "client certificate" in response.error
    assert recorder.messages == []
    good = await send(
        setup_factory,
        url,
        **pki.sender("client"),
    )
    assert good.status is Status.SENT


async def test_plain_http_and_garbage_do_not_hurt_an_https_listener(
    listen: Any, recorder_factory: Any, setup_factory: Any, pki: Any
) -> None:
    recorder = recorder_factory()
    port = await listen(recorder, **pki.listener())
    plain = await send(setup_factory, f"http://127.0.0.1:{port}/")
    assert plain.status is Status.QUEUED
    raw = await trio.open_tcp_stream("127.0.0.1", port)
    await raw.send_all(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
    with trio.fail_after(5):
        try:
            while await raw.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
    await raw.aclose()
    good = await send(setup_factory, f"https://127.0.0.1:{port}/", **pki.sender())
    assert good.status is Status.SENT
    assert len(recorder.messages) == 1


async def test_wrong_ca_is_a_clear_queued_error(
    listen: Any, recorder_factory: Any, setup_factory: Any, pki: Any
) -> None:
    port = await listen(recorder_factory(), **pki.listener())
    url = f"https://127.0.0.1:{port}/"
    response = await send(setup_factory, url, tlsEnabled=True, tlsCaFile=pki.other_ca)
    assert response.status is Status.QUEUED
    assert response.error.startswith(
        f"HTTP Sender: error connecting to {url}: TLS handshake failed: certificate verify failed"
    )
    # Without tlsEnabled, https:// URLs are checked against the system trust store.
    system = await send(setup_factory, url)
    assert system.status is Status.QUEUED and "certificate verify failed" in system.error


async def test_tls_enabled_refuses_a_plain_http_url(setup_factory: Any, pki: Any) -> None:
    response = await send(setup_factory, "http://127.0.0.1:9/in", **pki.sender())
    assert response.status is Status.ERROR
    assert "tlsEnabled is true but the URL 'http://127.0.0.1:9/in' is not https://" in (
        response.error
    )
