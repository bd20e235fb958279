"""The TLS helpers of ``pannier.net``: SSL contexts from connector properties, clear errors."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from pannier.net import (
    TLS_LISTENER_DEFAULTS,
    TLS_SENDER_DEFAULTS,
    client_ssl_context,
    server_ssl_context,
    tls_error_text,
)
from pannier.properties import PropertyError

trustme = pytest.importorskip("trustme")


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate and a client certificate as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.example")
    files = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        path = tmp_path / f"{name}.pem"
        blob.write_to_path(str(path))
        paths[name] = str(path)
    both = tmp_path / "server_both.pem"
    both.write_bytes(server.private_key_and_cert_chain_pem.bytes())
    paths["server_both"] = str(both)
    return paths


def listener(**props: Any) -> ssl.SSLContext | None:
    return server_ssl_context({**TLS_LISTENER_DEFAULTS, **props}, what="Test Listener")


def sender(**props: Any) -> ssl.SSLContext | None:
    return client_ssl_context({**TLS_SENDER_DEFAULTS, **props}, what="Test Sender")


def test_tls_off_gives_no_context() -> None:
    assert listener() is None
    assert sender() is None
    assert listener(tlsEnabled="false") is None


def test_files_set_while_tls_is_off_are_an_error(pki: dict[str, str]) -> None:
    with pytest.raises(PropertyError, match=r"Test Listener: property 'tlsCertFile' is set .* but"):
        listener(tlsCertFile=pki["server_cert"])
    with pytest.raises(PropertyError, match=r"'tlsCaFile' is set .* tlsEnabled is false"):
        sender(tlsCaFile=pki["ca"])


def test_listener_contexts(pki: dict[str, str]) -> None:
    plain = listener(tlsEnabled=True, tlsCertFile=pki["server_cert"], tlsKeyFile=pki["server_key"])
    assert plain is not None and plain.verify_mode == ssl.CERT_NONE
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    combined = listener(tlsEnabled="true", tlsCertFile=pki["server_both"])
    assert combined is not None
    for mode, expected in (("optional", ssl.CERT_OPTIONAL), ("REQUIRED", ssl.CERT_REQUIRED)):
        context = listener(
            tlsEnabled=True,
            tlsCertFile=pki["server_cert"],
            tlsKeyFile=pki["server_key"],
            tlsCaFile=pki["ca"],
            tlsClientAuth=mode,
        )
        assert context is not None and context.verify_mode == expected


def test_sender_contexts(pki: dict[str, str]) -> None:
    system = sender(tlsEnabled=True)
    assert system is not None and system.check_hostname and system.verify_mode == ssl.CERT_REQUIRED
    custom = sender(
        tlsEnabled=True,
        tlsCaFile=pki["ca"],
        tlsCertFile=pki["client_cert"],
        tlsKeyFile=pki["client_key"],
        tlsVerifyHostname="false",
    )
    assert custom is not None and not custom.check_hostname
    assert custom.verify_mode == ssl.CERT_REQUIRED  # the chain is always verified


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({}, "tlsEnabled is true but property 'tlsCertFile' is empty"),
        ({"tlsCertFile": "/no/such/cert.pem"}, "'tlsCertFile': file '/no/such/cert.pem' does not"),
        ({"tlsCertFile": "{tmp}"}, "'tlsCertFile': '.*' is not a file"),
        ({"tlsCertFile": "{server_key}"}, "'tlsCertFile': file '.*server_key.pem' holds no PEM"),
        ({"tlsCertFile": "{server_cert}"}, "'tlsCertFile': file '.*' holds no PEM private key"),
        (
            {"tlsCertFile": "{server_cert}", "tlsKeyFile": "{client_key}"},
            "tlsCertFile '.*server_cert.pem' and tlsKeyFile '.*client_key.pem' are not a usable",
        ),
        (
            {"tlsCertFile": "{server_both}", "tlsClientAuth": "always"},
            "'tlsClientAuth': 'always' is not one of none, optional, required",
        ),
        (
            {"tlsCertFile": "{server_both}", "tlsClientAuth": "required"},
            "tlsClientAuth is 'required' but property 'tlsCaFile' is empty",
        ),
        ({"tlsCertFile": "{server_both}", "tlsCaFile": "{ca}"}, "tlsClientAuth is 'none'"),
        (
            {
                "tlsCertFile": "{server_both}",
                "tlsCaFile": "{server_key}",
                "tlsClientAuth": "optional",
            },
            "'tlsCaFile': file '.*server_key.pem' holds no PEM certificate",
        ),
    ],
)
def test_listener_errors_name_the_property_and_file(
    pki: dict[str, str], tmp_path: Path, props: dict[str, str], message: str
) -> None:
    values = {k: v.format(tmp=tmp_path, **pki) for k, v in props.items()}
    with pytest.raises(PropertyError, match=f"^Test Listener: .*{message}"):
        listener(tlsEnabled=True, **values)


def test_encrypted_key_is_refused_clearly(pki: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "encrypted.pem"
    key.write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(PropertyError, match=r"'tlsKeyFile': the private key in .* is encrypted"):
        listener(tlsEnabled=True, tlsCertFile=pki["server_cert"], tlsKeyFile=str(key))


def test_sender_errors(pki: dict[str, str]) -> None:
    with pytest.raises(PropertyError, match=r"'tlsCaFile': file '/nope.pem' does not exist"):
        sender(tlsEnabled=True, tlsCaFile="/nope.pem")
    with pytest.raises(PropertyError, match=r"'tlsKeyFile' is set but 'tlsCertFile' is empty"):
        sender(tlsEnabled=True, tlsKeyFile=pki["client_key"])
    with pytest.raises(PropertyError, match=r"'tlsVerifyHostname': 'perhaps' is not a boolean"):
        sender(tlsEnabled=True, tlsVerifyHostname="perhaps")


def test_tls_error_text_is_short_and_plain() -> None:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] (_ssl.c:1006)")
    error.verify_message = "unable to get local issuer certificate"
    wrapped = RuntimeError("handshake")
    wrapped.__cause__ = error
    assert tls_error_text(wrapped) == (
        "certificate verify failed: unable to get local issuer certificate"
    )
    plain = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert tls_error_text(plain) == "[SSL: WRONG_VERSION_NUMBER] wrong version number"


async def test_accept_tls_gives_the_tls_stream_or_none_with_the_reason_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import trio
    import trio.testing
    from pannier.net import accept_tls

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    log = logging.getLogger("pannier.test")

    async def accept(client_speaks: bytes | None) -> Any:
        server_side, client_side = trio.testing.memory_stream_pair()
        client = trio.SSLStream(client_side, client_context, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            if client_speaks is None:
                nursery.start_soon(client.do_handshake)
            elif client_speaks:
                nursery.start_soon(client_side.send_all, client_speaks)
            result = await accept_tls(
                server_side, server_context, limit=0.5, label="peer:1", log=log
            )
            nursery.cancel_scope.cancel()
        return result

    plain = trio.testing.memory_stream_pair()[0]
    assert await accept_tls(plain, None, limit=1, label="x", log=log) is plain  # TLS off
    assert isinstance(await accept(None), trio.SSLStream)
    assert await accept(b"MSH|plain text, not a ClientHello\r\n" * 10) is None
    assert await accept(b"") is None  # says nothing: given up after the limit
    messages = [r.getMessage() for r in caplog.records if r.name == "pannier.test"]
    assert any(m.startswith("TLS handshake with peer:1 failed:") for m in messages), messages
    assert "TLS handshake with peer:1 not done within 0.5 s; closing" in messages
