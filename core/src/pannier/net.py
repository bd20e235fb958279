"""Networking helpers for network connectors (public kernel API): binding listeners, and TLS
(``ssl.SSLContext`` objects built from connector properties, TLS-aware receiving)."""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Mapping
from typing import Any

import trio

from pannier.properties import PropertyError, get_bool, get_str
from pannier.workers import current_worker

__all__ = [
    "TLS_CLIENT_AUTH_MODES",
    "TLS_LISTENER_DEFAULTS",
    "TLS_SENDER_DEFAULTS",
    "client_ssl_context",
    "open_listeners",
    "receive_some_or_eof",
    "server_ssl_context",
    "tls_error_text",
]


async def open_listeners(
    host: str, port: int, *, what: str, backlog: int | None = None
) -> tuple[list[trio.SocketListener], tuple[str, int]]:
    """Bind TCP listeners on ``host:port`` (all addresses when ``host`` is empty) and return
    them with the address actually bound (useful with port 0).

    With port 0 a name with several addresses would get a different port on each; only one
    listener is kept then, so the port reported is the one clients reach. A failure raises
    ``OSError`` whose text names ``what`` (``"TCP Listener"``) and the address.

    In a node running several engine processes (``pannier run --workers``) the sockets are
    bound with ``SO_REUSEPORT``: every worker listens on the port and the kernel spreads new
    connections over them. Listener plugins get this by binding through this function.
    """
    where = f"{host or '*'}:{port}"
    try:
        if current_worker().shares_ports:
            listeners = await _open_shared_listeners(host, port, backlog)
        else:
            listeners = await trio.open_tcp_listeners(port, host=host or None, backlog=backlog)
    except OSError as exc:
        raise OSError(exc.errno, f"{what} cannot listen on {where}: {exc.strerror or exc}") from exc
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            extra.socket.close()
        listeners = listeners[:1]
    name = listeners[0].socket.getsockname()
    return listeners, (str(name[0]), int(name[1]))


async def _open_shared_listeners(
    host: str, port: int, backlog: int | None
) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners`` with ``SO_REUSEPORT`` set before each bind."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _name, address in infos:
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(backlog if backlog is not None else 0xFFFF)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


# -- TLS ----------------------------------------------------------------------------------------
#
# Mirth's open edition has no TLS on its TCP and HTTP connectors; the ``tls*`` properties are
# Pannier's own. They live here so every network connector spells and checks them the same way.

TLS_CLIENT_AUTH_MODES = ("none", "optional", "required")
"""Values of ``tlsClientAuth``: ask no client certificate, verify one if offered, demand one."""

TLS_LISTENER_DEFAULTS: Mapping[str, Any] = {
    "tlsEnabled": False,
    "tlsCertFile": "",
    "tlsKeyFile": "",
    "tlsCaFile": "",
    "tlsClientAuth": "none",
}
"""The TLS properties of a listening connector and their defaults (TLS off)."""

TLS_SENDER_DEFAULTS: Mapping[str, Any] = {
    "tlsEnabled": False,
    "tlsCaFile": "",
    "tlsCertFile": "",
    "tlsKeyFile": "",
    "tlsVerifyHostname": True,
}
"""The TLS properties of a connecting connector and their defaults (TLS off)."""


def server_ssl_context(props: Mapping[str, Any], *, what: str) -> ssl.SSLContext | None:
    """The ``SSLContext`` a listener's ``tls*`` properties describe; ``None`` when
    ``tlsEnabled`` is false.

    ``tlsCertFile`` (PEM certificate chain, required) and ``tlsKeyFile`` (PEM private key, not
    encrypted; empty when it is in the certificate file) identify the listener.
    ``tlsClientAuth`` is ``none``, ``optional`` (a client certificate is verified when one is
    offered) or ``required`` (mutual TLS); the last two verify clients against ``tlsCaFile``.
    TLS 1.2 is the lowest version accepted. Every problem raises :class:`PropertyError` naming
    ``what`` (``"TCP Listener"``), the property and the file, so a bad channel fails at deploy.
    """
    if not _tls_enabled(props, TLS_LISTENER_DEFAULTS, what):
        return None
    cert = _tls_path(props, "tlsCertFile")
    key = _tls_path(props, "tlsKeyFile")
    ca = _tls_path(props, "tlsCaFile")
    mode = get_str(props, "tlsClientAuth", "none").strip().lower() or "none"
    if mode not in TLS_CLIENT_AUTH_MODES:
        raise PropertyError(
            f"{what}: property 'tlsClientAuth': {props.get('tlsClientAuth')!r} is not one of "
            + ", ".join(TLS_CLIENT_AUTH_MODES)
        )
    if not cert:
        raise PropertyError(
            f"{what}: tlsEnabled is true but property 'tlsCertFile' is empty; a TLS listener "
            "needs its certificate (a PEM file)"
        )
    if mode == "none" and ca:
        raise PropertyError(
            f"{what}: property 'tlsCaFile' is set but tlsClientAuth is 'none'; the CA file is "
            "only used to verify client certificates (tlsClientAuth 'optional' or 'required')"
        )
    if mode != "none" and not ca:
        raise PropertyError(
            f"{what}: tlsClientAuth is {mode!r} but property 'tlsCaFile' is empty; client "
            "certificates are verified against the CA certificates in that PEM file"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: they would sit unread on an idle kept-open connection.
    context.num_tickets = 0
    _load_identity(context, cert, key, what)
    if mode != "none":
        _load_ca(context, ca, what)
        context.verify_mode = ssl.CERT_REQUIRED if mode == "required" else ssl.CERT_OPTIONAL
    return context


def client_ssl_context(props: Mapping[str, Any], *, what: str) -> ssl.SSLContext | None:
    """The ``SSLContext`` a sender's ``tls*`` properties describe; ``None`` when
    ``tlsEnabled`` is false.

    The server's certificate is always verified: against the CA certificates in ``tlsCaFile``
    when set, else against the system's trust store; ``tlsVerifyHostname`` (default true) also
    checks that the certificate names the host connected to. ``tlsCertFile``/``tlsKeyFile``
    give a client certificate for mutual TLS. Problems raise :class:`PropertyError` naming
    ``what``, the property and the file.
    """
    if not _tls_enabled(props, TLS_SENDER_DEFAULTS, what):
        return None
    cert = _tls_path(props, "tlsCertFile")
    key = _tls_path(props, "tlsKeyFile")
    ca = _tls_path(props, "tlsCaFile")
    if key and not cert:
        raise PropertyError(
            f"{what}: property 'tlsKeyFile' is set but 'tlsCertFile' is empty; a client "
            "certificate needs both (or a PEM file holding both in tlsCertFile)"
        )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        _load_ca(context, ca, what)
    context.check_hostname = get_bool(props, "tlsVerifyHostname", True)
    if cert:
        _load_identity(context, cert, key, what)
    return context


def tls_error_text(exc: BaseException) -> str:
    """A short reason for a failed TLS handshake or TLS I/O, e.g. ``"certificate verify
    failed: unable to get local issuer certificate"``, found in ``exc`` or its causes."""
    seen: BaseException | None = exc
    for _ in range(20):  # an exception chain may in theory loop; never follow it far
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError) and seen.verify_message:
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            text = _SSL_LOCATION.sub("", str(seen.args[1] if len(seen.args) > 1 else seen))
            return text.strip() or (seen.reason or type(seen).__name__).lower()
        seen = seen.__cause__ or seen.__context__
    return _SSL_LOCATION.sub("", str(exc)).strip() or type(exc).__name__


async def accept_tls(
    sock: trio.SocketStream,
    context: ssl.SSLContext | None,
    *,
    limit: float,
    label: str,
    log: logging.Logger,
) -> trio.abc.Stream | None:
    """The stream a listener talks on for an accepted connection: ``sock`` itself without TLS
    (``context`` None), else a TLS stream once the server-side handshake is done.

    ``None`` when the handshake failed or took more than ``limit`` seconds; the reason is
    logged on ``log`` (the connector's logger) with the peer's ``label``. Call it in the
    connection's own task: a client that never finishes its handshake holds up only itself."""
    if context is None:
        return sock
    stream = trio.SSLStream(sock, context, server_side=True)
    with trio.move_on_after(limit):
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.warning("TLS handshake with %s failed: %s", label, tls_error_text(exc))
            return None
        return stream
    log.warning("TLS handshake with %s not done within %g s; closing", label, limit)
    return None


async def receive_some_or_eof(stream: trio.abc.ReceiveStream, max_bytes: int) -> bytes:
    """``stream.receive_some(max_bytes)``, with a TLS peer that closed its connection without
    a ``close_notify`` read as end of stream (``b""``) like a plain TCP close.

    Framed protocols notice a message cut short by themselves, so the missing ``close_notify``
    adds nothing for them, and many TLS peers omit it.
    """
    try:
        return bytes(await stream.receive_some(max_bytes))
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLEOFError) or (
            isinstance(cause, ssl.SSLError) and cause.reason == "UNEXPECTED_EOF_WHILE_READING"
        ):
            return b""
        raise


_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")


def _tls_enabled(props: Mapping[str, Any], defaults: Mapping[str, Any], what: str) -> bool:
    if get_bool(props, "tlsEnabled", False):
        return True
    for key in defaults:
        if key.endswith("File") and _tls_path(props, key):
            raise PropertyError(
                f"{what}: property {key!r} is set ({props.get(key)!r}) but tlsEnabled is false; "
                "set tlsEnabled = true to use TLS, or remove the TLS files"
            )
    return False


def _tls_path(props: Mapping[str, Any], key: str) -> str:
    return os.path.expanduser(get_str(props, key, "").strip())


def _read_pem(path: str, key: str, what: str) -> str:
    """The text of a PEM file, or a ``PropertyError`` saying why it cannot be used."""
    if not os.path.exists(path):
        raise PropertyError(f"{what}: property {key!r}: file {path!r} does not exist")
    if not os.path.isfile(path):
        raise PropertyError(f"{what}: property {key!r}: {path!r} is not a file")
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise PropertyError(
            f"{what}: property {key!r}: file {path!r} cannot be read: {exc.strerror or exc}"
        ) from None


def _load_identity(context: ssl.SSLContext, cert: str, key: str, what: str) -> None:
    cert_text = _read_pem(cert, "tlsCertFile", what)
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise PropertyError(
            f"{what}: property 'tlsCertFile': file {cert!r} holds no PEM certificate "
            "(no '-----BEGIN CERTIFICATE-----' line)"
        )
    key_name, key_path = ("tlsKeyFile", key) if key else ("tlsCertFile", cert)
    key_text = _read_pem(key_path, key_name, what) if key else cert_text
    if "PRIVATE KEY-----" not in key_text:
        raise PropertyError(
            f"{what}: property {key_name!r}: file {key_path!r} holds no PEM private key"
            + ("" if key else " (give the key in tlsKeyFile, or append it to tlsCertFile)")
        )
    if "ENCRYPTED" in key_text:
        raise PropertyError(
            f"{what}: property {key_name!r}: the private key in {key_path!r} is encrypted; "
            "Pannier needs an unencrypted key (protect the file with its permissions)"
        )
    try:
        context.load_cert_chain(cert, key or None)
    except (ssl.SSLError, OSError) as exc:
        raise PropertyError(
            f"{what}: tlsCertFile {cert!r} and {key_name} {key_path!r} are not a usable "
            f"certificate and matching private key: {tls_error_text(exc)}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: str, what: str) -> None:
    if "-----BEGIN CERTIFICATE-----" not in _read_pem(ca, "tlsCaFile", what):
        raise PropertyError(
            f"{what}: property 'tlsCaFile': file {ca!r} holds no PEM certificate "
            "(no '-----BEGIN CERTIFICATE-----' line)"
        )
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise PropertyError(
            f"{what}: property 'tlsCaFile': file {ca!r} holds no usable CA certificate: "
            f"{tls_error_text(exc)}"
        ) from None
