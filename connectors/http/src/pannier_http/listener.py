"""The "HTTP Listener" source connector (Mirth's ``HttpReceiver``) on trio with h11.

Each request whose path is under ``contextPath`` becomes one message: its body is the content,
and what the request said (method, path, query parameters, headers, client address) goes into the
source map under Mirth's names. The channel's selected response is the reply body; the status is
``responseStatusCode`` when set, else 500 when the response's status is ERROR and 200 otherwise.
With ``tlsEnabled`` (Pannier's addition) it serves HTTPS, optionally with client certificates.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import ssl
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio
from pannier import ChannelStoppedError, ConnectorSetup, Dispatcher, RawMessage, SourceConnector
from pannier.model.status import Status
from pannier.net import (
    TLS_LISTENER_DEFAULTS,
    accept_tls,
    open_listeners,
    receive_some_or_eof,
    server_ssl_context,
    tls_error_text,
)

from pannier_http._props import (
    PropertyError,
    get_bool,
    get_int,
    get_multimap,
    get_str,
    resolve_charset,
)

LOG = logging.getLogger("pannier.http")

LISTENER_MIRTH_CLASS = "com.mirth.connect.connectors.http.HttpReceiverProperties"

DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
DEFAULT_BINARY_MIME_TYPES = "application/.*(?<!json|xml)$|image/.*|video/.*|audio/.*"

LISTENER_DEFAULTS: Mapping[str, Any] = {
    # listenerConnectorProperties (Mirth's HTTP Listener default port is 80)
    "host": "0.0.0.0",
    "port": 80,
    # HttpReceiverProperties
    "xmlBody": False,
    "parseMultipart": True,
    "includeMetadata": False,
    "binaryMimeTypes": DEFAULT_BINARY_MIME_TYPES,
    "binaryMimeTypesRegex": True,
    "responseContentType": "text/plain",
    "responseDataTypeBinary": False,
    "responseStatusCode": "",
    "responseHeaders": {},
    "charset": "UTF-8",
    "contextPath": "",
    "timeout": 30000,
    "staticResources": [],
    # Pannier's own
    "maxBodySize": DEFAULT_MAX_BODY_SIZE,
    **TLS_LISTENER_DEFAULTS,
    # sourceConnectorProperties: read by the kernel (response selection)
    "responseVariable": "None",
}

_BACKLOG = 256
RESPONSE_WRITE_LIMIT = 10.0
"""Seconds a client gets to take a response (or to finish a TLS handshake) when ``timeout`` is 0."""
_MAX_HEADER_SIZE = 64 * 1024
_READ_SIZE = 65536
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Reject(Exception):
    """Answer the current request with an error status and close the connection."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _normalize_context_path(value: str) -> str:
    path = value.strip().strip("/")
    return f"/{path}" if path else ""


class HttpListener(SourceConnector):
    """Serves HTTP/1.1 (keep-alive included) and hands each request body to the channel."""

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        self.host = get_str(props, "host", "0.0.0.0").strip()
        self.port = get_int(props, "port", 80, minimum=0, maximum=65535)
        self.context_path = _normalize_context_path(get_str(props, "contextPath", ""))
        self.timeout = get_int(props, "timeout", 30000, minimum=0) / 1000
        self.response_content_type = get_str(props, "responseContentType", "text/plain").strip()
        self.response_binary = get_bool(props, "responseDataTypeBinary", False)
        status_code = get_str(props, "responseStatusCode", "").strip()
        if status_code:
            self.response_status: int | None = get_int(
                {"responseStatusCode": status_code}, "responseStatusCode", 200, minimum=100,
                maximum=599,
            )  # fmt: skip
        else:
            self.response_status = None
        self.response_headers = get_multimap(props, "responseHeaders")
        self.charset = resolve_charset(props.get("charset", "UTF-8"))
        self.max_body_size = get_int(props, "maxBodySize", DEFAULT_MAX_BODY_SIZE, minimum=0)
        binary_types = get_str(props, "binaryMimeTypes", DEFAULT_BINARY_MIME_TYPES).strip()
        self._binary_match: Any = None
        if binary_types:
            if get_bool(props, "binaryMimeTypesRegex", True):
                try:
                    # Java allows alternatives of different widths in a look-behind (Mirth's
                    # default uses one); Python needs them split.
                    pattern = re.compile(binary_types.replace("(?<!json|xml)", "(?<!json)(?<!xml)"))
                except re.error as exc:
                    raise PropertyError(f"HTTP Listener: binaryMimeTypes: {exc}") from None
                self._binary_match = lambda mime: pattern.fullmatch(mime) is not None
            else:
                prefixes = [p.strip().lower() for p in binary_types.split(",") if p.strip()]
                self._binary_match = lambda mime: any(mime.startswith(p) for p in prefixes)
        _check_unsupported(props)
        self.ssl_context: ssl.SSLContext | None = server_ssl_context(props, what="HTTP Listener")
        self._scheme = "https" if self.ssl_context is not None else "http"
        self._connections = 0
        self._dispatching = 0

    @property
    def connections(self) -> int:
        """Client connections open right now (each one is a task of the listener)."""
        return self._connections

    # -- state reporting ----------------------------------------------------------------------

    def _report(self, state: str, **details: Any) -> None:
        details.setdefault("connections", self._connections)
        self._setup.report_state(state, details)

    # -- the connector ----------------------------------------------------------------------

    async def run(
        self,
        dispatcher: Dispatcher,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners, bound = await open_listeners(
            self.host, self.port, what="HTTP Listener", backlog=_BACKLOG
        )
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, dispatcher, nursery)
                LOG.info(
                    "HTTP Listener of channel %s listening on %s://%s:%s%s",
                    self._setup.channel_name,
                    self._scheme,
                    bound[0],
                    bound[1],
                    self.context_path or "/",
                )
                self._report("idle")
                task_status.started(bound)
        finally:
            for listener in listeners:
                listener.socket.close()
            LOG.info("HTTP Listener of channel %s stopped", self._setup.channel_name)

    async def _accept_loop(
        self, listener: trio.SocketListener, dispatcher: Dispatcher, nursery: trio.Nursery
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                LOG.error("HTTP Listener: accepting a connection failed (%s); retrying", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream, dispatcher)

    async def _connection(self, sock: trio.SocketStream, dispatcher: Dispatcher) -> None:
        label = "unknown client"
        counted = False
        try:
            try:
                local = sock.socket.getsockname()
                remote = sock.socket.getpeername()
            except OSError:
                return
            label = f"{remote[0]}:{remote[1]}"
            peer = {
                "remoteAddress": remote[0],
                "remotePort": remote[1],
                "localAddress": local[0],
                "localPort": local[1],
            }
            self._connections += 1
            counted = True
            self._report("connected", remoteAddress=label)
            try:
                stream = await accept_tls(
                    sock,
                    self.ssl_context,
                    limit=self.timeout if self.timeout > 0 else RESPONSE_WRITE_LIMIT,
                    label=label,
                    log=LOG,
                )
                if stream is None:
                    return
                await self._serve(stream, dispatcher, peer, label)
                if stream is not sock:
                    # close_notify, briefly and best effort; the socket is closed below.
                    with trio.move_on_after(1), contextlib.suppress(*_BROKEN):
                        await stream.aclose()
            except _BROKEN as exc:
                reason = tls_error_text(exc) if _is_tls_error(exc) else str(exc) or repr(exc)
                LOG.info("connection from %s broke: %s", label, reason)
            except Exception:
                LOG.exception("unexpected error on the connection from %s; closing it", label)
        finally:
            if counted:
                self._connections -= 1
                self._report("connected" if self._connections else "idle")
            sock.socket.close()

    async def _next_event(self, conn: h11.Connection, stream: trio.abc.Stream) -> Any:
        """The next h11 event; ``None`` when the client went quiet past ``timeout``."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.timeout > 0:
                with trio.move_on_after(self.timeout):
                    data = await receive_some_or_eof(stream, _READ_SIZE)
                    conn.receive_data(data)
                    continue
                return None
            conn.receive_data(await receive_some_or_eof(stream, _READ_SIZE))

    async def _serve(
        self,
        stream: trio.abc.Stream,
        dispatcher: Dispatcher,
        peer: dict[str, Any],
        label: str,
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_SIZE)
        while True:
            try:
                event = await self._next_event(conn, stream)
                if event is None or isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return  # h11 hands nothing else at the start of a cycle
                keep = await self._request(conn, stream, dispatcher, event, peer, label)
            except h11.RemoteProtocolError as exc:
                LOG.info("malformed HTTP from %s: %s", label, exc)
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    await self._send_simple(conn, stream, status, f"Bad request: {exc}\n")
                return
            except _Reject as reject:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_simple(conn, stream, reject.status, reject.text)
                return
            if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    # -- one request ------------------------------------------------------------------------

    async def _request(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        dispatcher: Dispatcher,
        request: h11.Request,
        peer: dict[str, Any],
        label: str,
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        target = request.target.decode("latin-1")
        split = urlsplit(target)
        path = unquote(split.path or "/")
        if not self._under_context(path):
            raise _Reject(404, f"Not found: {path}\n")
        headers: dict[str, list[str]] = {}
        content_type = ""
        for name, value in request.headers.raw_items():
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers.setdefault(key, []).append(text)
            if key.lower() == "content-type":
                content_type = text
        for name, value in request.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_body_size:
                    raise _Reject(
                        413, f"Request body of {length} bytes exceeds {self.max_body_size}\n"
                    )
        body = await self._read_body(conn, stream)
        if body is None:
            return False
        host = headers.get("Host") or headers.get("host") or [f"{peer['localAddress']}"]
        source_map: dict[str, Any] = {
            **peer,
            "method": request.method.decode("ascii", "replace"),
            "url": f"{self._scheme}://{host[0]}{split.path or '/'}",
            "uri": split.path or "/",
            "protocol": f"HTTP/{request.http_version.decode('ascii', 'replace')}",
            "query": split.query,
            "contextPath": path,
            "headers": headers,
            "parameters": _parameters(split.query),
        }
        raw = self._raw_message(body, content_type, source_map, label)
        self._dispatching += 1
        self._report("receiving", remoteAddress=label)
        try:
            result = await dispatcher.dispatch(raw)
        except ChannelStoppedError:
            raise _Reject(503, "The channel is stopping and takes no new messages\n") from None
        except Exception as exc:
            LOG.exception("dispatching a message from %s failed", label)
            raise _Reject(500, f"Error processing the message: {exc}\n") from None
        finally:
            self._dispatching -= 1
            if not self._dispatching:
                self._report("idle")
        response = result.response
        text = response.message if response is not None else ""
        if self.response_status is not None:
            status = self.response_status
        elif response is not None and response.status == Status.ERROR:
            status = 500
        else:
            status = 200
        payload = self._encode_response(text, label)
        return await self._send(conn, stream, status, payload, self._content_type(), label)

    def _under_context(self, path: str) -> bool:
        cp = self.context_path
        return not cp or path == cp or path.startswith(cp + "/")

    async def _read_body(self, conn: h11.Connection, stream: trio.abc.Stream) -> bytes | None:
        if conn.they_are_waiting_for_100_continue:
            await stream.send_all(
                conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream)
            if event is None or isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body_size:
                    raise _Reject(413, f"Request body exceeds {self.max_body_size} bytes\n")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)

    def _raw_message(
        self, body: bytes, content_type: str, source_map: dict[str, Any], label: str
    ) -> RawMessage:
        mime, _, params = content_type.partition(";")
        mime = mime.strip().lower()
        if mime and self._binary_match is not None and self._binary_match(mime):
            return RawMessage(body, source_map)
        charset = self.charset
        match = re.search(r"charset\s*=\s*\"?([^\";\s]+)", params, re.IGNORECASE)
        if match:
            try:
                charset = resolve_charset(match.group(1))
            except PropertyError:
                LOG.warning("unknown charset %r from %s; using %s", match.group(1), label, charset)
        try:
            return RawMessage(body.decode(charset), source_map)
        except UnicodeDecodeError as exc:
            problem = (
                f"byte(s) at offset {exc.start} are not valid {charset}; "
                "the message is passed on as bytes, unaltered"
            )
            LOG.warning("message from %s: %s", label, problem)
            return RawMessage(body, {**source_map, "charsetError": problem})

    def _content_type(self) -> str:
        value = self.response_content_type or "text/plain"
        if not self.response_binary and "charset" not in value.lower():
            value = f"{value}; charset={self.charset}"
        return value

    def _encode_response(self, text: str, label: str) -> bytes:
        if self.response_binary:
            try:
                return base64.b64decode(text, validate=False)
            except (binascii.Error, ValueError):
                LOG.warning("response to %s is not base64 although binary; sent as text", label)
        return text.encode(self.charset, errors="replace")

    async def _send(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        status: int,
        payload: bytes,
        content_type: str,
        label: str,
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> bool:
        headers: list[tuple[bytes, bytes]] = [
            (b"Content-Type", content_type.encode("latin-1", "replace")),
            (b"Content-Length", str(len(payload)).encode()),
        ]
        for name, value in [*self.response_headers, *(extra or [])]:
            headers.append((name.encode("latin-1", "replace"), value.encode("latin-1", "replace")))
        try:
            reason = _reason(status)
            data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
        except h11.LocalProtocolError as exc:
            LOG.error("response to %s not valid HTTP (%s); sending 500", label, exc)
            data = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            await self._write(stream, data, label)
            return False
        data = (data or b"") + (conn.send(h11.Data(data=payload)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
        return await self._write(stream, data, label)

    async def _send_simple(
        self, conn: h11.Connection, stream: trio.abc.Stream, status: int, text: str
    ) -> None:
        await self._send(
            conn,
            stream,
            status,
            text.encode("utf-8", "replace"),
            "text/plain; charset=utf-8",
            "client",
            extra=[("Connection", "close")],
        )

    async def _write(self, stream: trio.abc.Stream, data: bytes, label: str) -> bool:
        # The message is stored by now: write the response even while the channel stops
        # (shielded), but never for longer than the limit.
        limit = self.timeout if self.timeout > 0 else RESPONSE_WRITE_LIMIT
        try:
            # One scope, shielded from the channel's stop but not from its own deadline
            # (two nested scopes cost a visible share of a message's CPU time).
            with trio.CancelScope(shield=True, deadline=trio.current_time() + limit) as scope:
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            LOG.info("response to %s could not be sent: %s", label, exc)
            return False
        return not scope.cancelled_caught


def _is_tls_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _parameters(query: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    return params


def _check_unsupported(props: Mapping[str, Any]) -> None:
    """Refuse Mirth settings this connector does not implement rather than ignore them."""
    if get_bool(props, "xmlBody", False):
        raise PropertyError("HTTP Listener: xmlBody=true (request as XML) is not supported yet")
    if get_bool(props, "includeMetadata", False):
        raise PropertyError("HTTP Listener: includeMetadata=true is not supported yet")
    if props.get("staticResources"):
        raise PropertyError("HTTP Listener: staticResources are not supported yet")
