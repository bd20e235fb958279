"""The "HTTP Sender" destination connector (Mirth's ``HttpDispatcher``) with httpx on trio.

As in Mirth: a response below 400 is SENT (its body becomes the response message); a response of
400 or more, or a failure to connect, leaves the message QUEUED with the error text (the kernel
turns QUEUED into ERROR when the destination's queue is off, as Mirth does).

With ``tlsEnabled`` (Pannier's addition) requests go out over TLS with the trust store, client
certificate and hostname check the ``tls*`` properties give; ``http://`` URLs are then refused.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

import httpx
from pannier import ConnectorSetup, DestinationConnector, Response, SendRequest, Status
from pannier.net import TLS_SENDER_DEFAULTS, client_ssl_context, tls_error_text

from pannier_http._props import (
    PropertyError,
    get_bool,
    get_int,
    get_multimap,
    get_str,
    resolve_charset,
)

LOG = logging.getLogger("pannier.http")

SENDER_MIRTH_CLASS = "com.mirth.connect.connectors.http.HttpDispatcherProperties"

SENDER_DEFAULTS: Mapping[str, Any] = {
    "host": "",
    "method": "post",
    "headers": {},
    "parameters": {},
    "useAuthentication": False,
    "authenticationType": "Basic",
    "usePreemptiveAuthentication": False,
    "username": "",
    "password": "",
    "content": "${message.encodedData}",
    "contentType": "text/plain",
    "dataTypeBinary": False,
    "charset": "UTF-8",
    "socketTimeout": 30000,
    "useProxyServer": False,
    "multipart": False,
    "responseXmlBody": False,
    # Pannier's own
    **TLS_SENDER_DEFAULTS,
}
SENDER_TEMPLATED = frozenset(
    {"host", "headers", "parameters", "username", "password", "content", "contentType"}
)

_METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}


class HttpSender(DestinationConnector):
    """Sends each message as one HTTP request."""

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        method = get_str(props, "method", "post").strip().lower()
        if method not in _METHODS:
            raise PropertyError(f"HTTP Sender: unsupported method {method!r}")
        self.method = method
        self.socket_timeout = get_int(props, "socketTimeout", 30000, minimum=0) / 1000
        auth_type = get_str(props, "authenticationType", "Basic").strip()
        if auth_type not in ("Basic", "Digest"):
            raise PropertyError(
                f"HTTP Sender: authenticationType must be Basic or Digest, not {auth_type!r}"
            )
        self.auth_type = auth_type
        resolve_charset(props.get("charset", "UTF-8"))  # fail early on a bad name
        for key, what in (
            ("useProxyServer", "proxies"),
            ("multipart", "multipart requests"),
            ("responseXmlBody", "responses as XML"),
            ("dataTypeBinary", "binary content"),
        ):
            if get_bool(props, key, False):
                raise PropertyError(f"HTTP Sender: {what} ({key}=true) are not supported yet")
        self.ssl_context: ssl.SSLContext | None = client_ssl_context(props, what="HTTP Sender")
        self._client: httpx.AsyncClient | None = None

    def _new_client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True  # httpx's default: the system trust store
        if self.ssl_context is not None:
            verify = self.ssl_context
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.socket_timeout or None),
            follow_redirects=False,
            verify=verify,
        )

    def _report(self, state: str, **details: Any) -> None:
        self._setup.report_state(state, details)

    async def start(self) -> None:
        self._client = self._new_client()
        self._report("idle")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, request: SendRequest) -> Response:
        props = request.properties
        url = get_str(props, "host", "").strip()
        if not url:
            return Response(Status.ERROR, error="HTTP Sender: no URL (host) is configured")
        if self.ssl_context is not None and not url.lower().startswith("https://"):
            text = f"HTTP Sender: tlsEnabled is true but the URL {url!r} is not https://"
            return Response(Status.ERROR, status_message=text, error=text)
        charset = resolve_charset(props.get("charset", "UTF-8"))
        content_type = get_str(props, "contentType", "text/plain").strip() or "text/plain"
        if "charset" not in content_type.lower():
            content_type = f"{content_type}; charset={charset}"
        headers = [("Content-Type", content_type)] if self.method not in ("get", "head") else []
        custom = get_multimap(props, "headers")
        if any(name.lower() == "content-type" for name, _ in custom):
            headers = []
        headers.extend(custom)
        params: list[tuple[str, str | int | float | bool | None]] = list(
            get_multimap(props, "parameters")
        )
        body: bytes | None = None
        if self.method not in ("get", "head", "delete", "options"):
            content = props.get("content", "")
            if isinstance(content, bytes):
                body = content
            else:
                body = str(content).encode(charset, errors="replace")
        auth: httpx.Auth | None = None
        if get_bool(props, "useAuthentication", False):
            username = get_str(props, "username", "")
            password = get_str(props, "password", "")
            if self.auth_type == "Digest":
                auth = httpx.DigestAuth(username, password)
            else:
                auth = httpx.BasicAuth(username, password)
        client = self._client
        own = client is None
        if client is None:  # send() without start(): a client for this one request
            client = self._new_client()
        self._report("sending", url=url)
        try:
            reply = await client.request(
                self.method.upper(),
                url,
                headers=headers,
                params=params or None,
                content=body,
                auth=auth,
            )
        except httpx.InvalidURL as exc:
            return Response(Status.ERROR, error=f"HTTP Sender: invalid URL {url!r}: {exc}")
        except httpx.HTTPError as exc:
            detail = _error_text(exc)
            LOG.warning("HTTP Sender: error connecting to %s: %s", url, detail)
            return Response(
                Status.QUEUED,
                status_message="Error connecting to web service.",
                error=f"HTTP Sender: error connecting to {url}: {detail}",
            )
        finally:
            if own:
                await client.aclose()
            self._report("idle")
        text = _reply_text(reply, charset)
        status_line = f"HTTP/1.1 {reply.status_code} {reply.reason_phrase}".rstrip()
        if reply.status_code < 400:
            return Response(Status.SENT, message=text, status_message=status_line)
        return Response(
            Status.QUEUED,
            message=text,
            status_message=f"Received error response from HTTP server: {status_line}",
            error=f"HTTP Sender: {url} answered {status_line}\n{text}".rstrip(),
        )


def _error_text(exc: BaseException) -> str:
    """Why a request failed; a TLS failure is said as such ("TLS handshake failed: certificate
    verify failed: ...")."""
    seen: BaseException | None = exc
    for _ in range(20):  # an exception chain may in theory loop; never follow it far
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed: {tls_error_text(seen)}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "[SSL" in text:  # httpx may keep only the text of the ssl error
        return f"TLS handshake failed: {tls_error_text(exc)}"
    if not text and isinstance(exc, httpx.ReadError | httpx.WriteError):
        text = "the connection broke before the response arrived"
        try:
            secure = exc.request.url.scheme == "https"
        except RuntimeError:  # no request attached
            secure = False
        if secure:
            text += " (a TLS server refusing the client certificate closes it like this)"
    return text or type(exc).__name__


def _reply_text(reply: httpx.Response, default_charset: str) -> str:
    encoding = reply.charset_encoding or default_charset
    try:
        return reply.content.decode(encoding, errors="replace")
    except LookupError:
        return reply.content.decode(default_charset, errors="replace")
