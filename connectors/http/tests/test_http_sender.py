"""The HTTP Sender against a real HTTP Listener on loopback."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
from pannier import Response, SendRequest, Status
from pannier_http import SENDER_DEFAULTS, HttpSender
from pannier_http._props import PropertyError


def request(**props: Any) -> SendRequest:
    return SendRequest(
        channel_id="c1",
        message_id=1,
        metadata_id=1,
        encoded="MSH|x",
        properties={**SENDER_DEFAULTS, "content": "MSH|x", **props},
    )


async def send(setup_factory: Any, **props: Any) -> Response:
    sender = HttpSender(setup_factory(SENDER_DEFAULTS, **props))
    await sender.start()
    try:
        return await sender.send(request(**props))
    finally:
        await sender.stop()


async def test_post_sent_with_response_body(
    listen: Any, recorder_factory: Any, setup_factory: Any
) -> None:
    recorder = recorder_factory(respond=lambda raw: Response(Status.SENT, message="ACK"))
    port = await listen(recorder)
    response = await send(
        setup_factory,
        host=f"http://127.0.0.1:{port}/in",
        headers={"X-One": "1", "X-Many": ["a", "b"]},
        parameters={"p": "v"},
        contentType="application/hl7-v2",
    )
    assert response.status == Status.SENT
    assert response.message == "ACK"
    (raw,) = recorder.messages
    assert raw.content == b"MSH|x"  # application/* is binary on the listener side
    assert raw.source_map["method"] == "POST"
    assert raw.source_map["parameters"] == {"p": ["v"]}
    headers = {k.lower(): v for k, v in raw.source_map["headers"].items()}
    assert headers["x-one"] == ["1"]
    assert headers["x-many"] == ["a", "b"]
    assert headers["content-type"] == ["application/hl7-v2; charset=utf-8"]


async def test_basic_auth_header(listen: Any, recorder_factory: Any, setup_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder)
    response = await send(
        setup_factory,
        host=f"http://127.0.0.1:{port}/",
        useAuthentication=True,
        username="mirth",
        password="s3cret",
    )
    assert response.status == Status.SENT
    headers = {k.lower(): v for k, v in recorder.messages[0].source_map["headers"].items()}
    assert headers["authorization"] == ["Basic " + base64.b64encode(b"mirth:s3cret").decode()]


async def test_get_has_no_body(listen: Any, recorder_factory: Any, setup_factory: Any) -> None:
    recorder = recorder_factory()
    port = await listen(recorder)
    response = await send(setup_factory, host=f"http://127.0.0.1:{port}/q", method="get")
    assert response.status == Status.SENT
    assert recorder.messages[0].source_map["method"] == "GET"
    assert recorder.messages[0].content == ""


async def test_error_status_is_queued_with_status_line(
    listen: Any, recorder_factory: Any, setup_factory: Any
) -> None:
    port = await listen(recorder_factory(respond=lambda raw: Response(Status.ERROR, message="no")))
    response = await send(setup_factory, host=f"http://127.0.0.1:{port}/")
    assert response.status == Status.QUEUED
    assert "500 Internal Server Error" in response.error
    assert response.message == "no"


async def test_connection_refused_is_queued(setup_factory: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    response = await send(setup_factory, host=url)
    assert response.status == Status.QUEUED
    assert url in response.error


async def test_send_without_start(listen: Any, recorder_factory: Any, setup_factory: Any) -> None:
    port = await listen(recorder_factory())
    props = {"host": f"http://127.0.0.1:{port}/"}
    sender = HttpSender(setup_factory(SENDER_DEFAULTS, **props))
    assert (await sender.send(request(**props))).status == Status.SENT


async def test_bad_properties_refused(setup_factory: Any) -> None:
    with pytest.raises(PropertyError):
        HttpSender(setup_factory(SENDER_DEFAULTS, authenticationType="NTLM"))
    with pytest.raises(PropertyError):
        HttpSender(setup_factory(SENDER_DEFAULTS, method="brew"))
    response = await HttpSender(setup_factory(SENDER_DEFAULTS)).send(request(host=""))
    assert response.status == Status.ERROR


def test_plugin_registers_both_connectors() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="pannier.plugins") if e.name == "http"]
    module = ep.load()
    types = {t.transport_name: t for t in module.pannier_register_connectors()}
    assert types["HTTP Listener"].mode == "source"
    assert types["HTTP Listener"].defaults["port"] == 80
    assert types["HTTP Sender"].mode == "destination"
    assert "host" in types["HTTP Sender"].templated
