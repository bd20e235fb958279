"""TLS and mutual TLS on the TCP Listener and TCP Sender, over real loopback sockets, with
certificates made at test time (trustme)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
import trio
from pannier import SendRequest, Status
from pannier_mllp import encode_frame


def request(port: int, host: str = "127.0.0.1") -> SendRequest:
    return SendRequest(
        channel_id="c",
        message_id=1,
        metadata_id=1,
        encoded="MSH|^~\\&|TLS\r",
        properties={"remoteAddress": host, "remotePort": port, "template": ""},
    )


async def send_once(make_sender: Any, port: int, host: str = "127.0.0.1", **props: Any) -> Any:
    sender = make_sender(responseTimeout=5000, **props)
    try:
        return await sender.send(request(port, host))
    finally:
        await sender.stop()


async def wait_idle(listener: Any) -> None:
    with trio.fail_after(5):
        while listener.connections:
            await trio.sleep(0.005)


async def test_tls_round_trip(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    recorder = recorder_factory(respond=lambda raw: "MSA|AA|" + raw.content[:8])
    running = await listen(recorder, **pki.listener())
    response = await send_once(make_sender, running.port, **pki.sender())
    assert (response.status, response.message) == (Status.SENT, "MSA|AA|MSH|^~\\&")
    [raw] = recorder.messages
    assert raw.content == "MSH|^~\\&|TLS\r"
    assert raw.source_map["localPort"] == running.port
    await wait_idle(running.listener)


async def test_tls_kept_open_connection_is_reused(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, **pki.listener())
    sender = make_sender(keepConnectionOpen=True, **pki.sender())
    for _ in range(3):
        response = await sender.send(request(running.port))
        assert (response.status, response.message) == (Status.SENT, "ACK")
    assert running.listener.connections == 1
    assert len({raw.source_map["remotePort"] for raw in recorder.messages}) == 1
    await sender.stop()
    await wait_idle(running.listener)


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_mutual_tls_accepts_a_client_certificate_from_the_ca(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any, mode: str
) -> None:
    running = await listen(recorder_factory(), **pki.listener(mode))
    response = await send_once(
        make_sender,
        running.port,
        **pki.sender("client"),
    )
    assert (response.status, response.message) == (Status.SENT, "ACK")


async def test_mutual_tls_refuses_clients_without_a_good_certificate(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="pannier.mllp")
    recorder = recorder_factory()
    running = await listen(recorder, **pki.listener("required"))
    no_cert = await send_once(make_sender, running.port, **pki.sender())
    stranger = await send_once(
        make_sender,
        running.port,
        **pki.sender("stranger"),
    )
    for response in (no_cert, stranger):
        # Refused like any other connection failure: QUEUED, so the queue retries it.
        assert response.status is Status.QUEUED, response
        assert f"127.0.0.1:{running.port}" in response.error
    assert "certificate" in no_cert.error.lower()
    assert recorder.messages == []
    handshake_logs = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(handshake_logs) == 2 and all("certificate" in text for text in handshake_logs)
    # The listener is unharmed.
    good = await send_once(
        make_sender,
        running.port,
        **pki.sender("client"),
    )
    assert good.status is Status.SENT
    await wait_idle(running.listener)


async def test_optional_client_auth_accepts_no_certificate_but_not_a_bad_one(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    running = await listen(recorder_factory(), **pki.listener("optional"))
    anonymous = await send_once(make_sender, running.port, **pki.sender())
    assert anonymous.status is Status.SENT
    stranger = await send_once(
        make_sender,
        running.port,
        **pki.sender("stranger"),
    )
    assert stranger.status is Status.QUEUED


async def test_plain_text_and_stalled_clients_do_not_hurt_a_tls_listener(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, receiveTimeout=300, **pki.listener())
    # A client speaking plain MLLP to the TLS port: the handshake fails, its connection closes.
    plain = await trio.open_tcp_stream("127.0.0.1", running.port)
    await plain.send_all(encode_frame(b"MSH|^~\\&|PLAIN\r"))
    with trio.fail_after(5):
        while True:
            try:
                data = await plain.receive_some()
            except trio.BrokenResourceError:
                break
            if not data:
                break
            assert b"MSH" not in data  # at most a TLS alert, never an answer
    await plain.aclose()
    # A client that connects and never starts the handshake holds its slot only so long.
    silent = await trio.open_tcp_stream("127.0.0.1", running.port)
    # A TLS client is served meanwhile.
    response = await send_once(make_sender, running.port, **pki.sender())
    assert (response.status, response.message) == (Status.SENT, "ACK")
    with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):
        assert await silent.receive_some() == b""  # closed by the listener after 300 ms
    await silent.aclose()
    await wait_idle(running.listener)
    assert [raw.content for raw in recorder.messages] == ["MSH|^~\\&|TLS\r"]


async def test_wrong_ca_on_the_sender_is_a_clear_queued_error(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder, **pki.listener())
    response = await send_once(make_sender, running.port, tlsEnabled=True, tlsCaFile=pki.other_ca)
    assert response.status is Status.QUEUED
    assert response.error == (
        f"TCP Sender: TLS handshake with 127.0.0.1:{running.port} failed: certificate verify "
        "failed: unable to get local issuer certificate"
    )
    assert recorder.messages == []
    # The system trust store does not know the test CA either.
    system = await send_once(make_sender, running.port, tlsEnabled=True)
    assert system.status is Status.QUEUED and "certificate verify failed" in system.error


async def test_hostname_verification(
    listen: Any, recorder_factory: Any, make_sender: Any, pki: Any
) -> None:
    running = await listen(
        recorder_factory(), tlsEnabled=True, tlsCertFile=pki.named_cert, tlsKeyFile=pki.named_key
    )
    # The certificate names "localhost" only: reaching it as 127.0.0.1 fails the check...
    by_address = await send_once(make_sender, running.port, **pki.sender())
    assert by_address.status is Status.QUEUED
    assert "certificate verify failed" in by_address.error and "127.0.0.1" in by_address.error
    # ...unless the check is turned off (the chain is still verified),
    unchecked = await send_once(make_sender, running.port, **pki.sender(), tlsVerifyHostname=False)
    assert unchecked.status is Status.SENT
    # ...or the name it carries is used.
    by_name = await send_once(make_sender, running.port, "localhost", **pki.sender())
    assert by_name.status is Status.SENT
