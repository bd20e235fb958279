"""The "TCP Sender" destination connector in MLLP mode (Mirth's ``TcpDispatcher``), with
Pannier's TLS / mutual TLS and MLLPv2 commit acknowledgements."""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio
from pannier import ConnectorSetup, DestinationConnector, Response, SendRequest, Status
from pannier.net import TLS_SENDER_DEFAULTS, client_ssl_context, tls_error_text

from pannier_mllp._mllpv2 import MLLPV2_DEFAULTS, MLLPv2, mllpv2_from_properties
from pannier_mllp._net import error_text, peer_closed_or_talking, timeout_seconds
from pannier_mllp._props import (
    DEFAULT_ENCODING,
    PropertyError,
    framing_from_properties,
    get_bool,
    get_int,
    get_str,
    resolve_charset,
    to_int,
)
from pannier_mllp._reader import FrameReader
from pannier_mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameEncodeError,
    FrameTooLargeError,
)

LOG = logging.getLogger("pannier.mllp")

SENDER_MIRTH_CLASS = "com.mirth.connect.connectors.tcp.TcpDispatcherProperties"

DEFAULT_TEMPLATE = "${message.encodedData}"

SENDER_DEFAULTS: Mapping[str, Any] = {
    "remoteAddress": "127.0.0.1",
    # Text, as in Mirth: a templated property may hold "${...}"; read as a number per message.
    "remotePort": "6660",
    "overrideLocalBinding": False,
    "localAddress": "0.0.0.0",
    "localPort": 0,
    "sendTimeout": 5000,
    "responseTimeout": 5000,
    "bufferSize": 65536,
    "keepConnectionOpen": False,
    "ignoreResponse": False,
    "queueOnResponseTimeout": True,
    "dataTypeBinary": False,
    "charsetEncoding": DEFAULT_ENCODING,
    "template": DEFAULT_TEMPLATE,
    # transmissionModeProperties (MLLP mode)
    "pluginPointName": "MLLP",
    "startOfMessageBytes": "0B",
    "endOfMessageBytes": "1C0D",
    **MLLPV2_DEFAULTS,
    # Pannier's own: the largest response frame accepted, TLS
    "maxFrameSize": DEFAULT_MAX_FRAME_SIZE,
    **TLS_SENDER_DEFAULTS,
}

SENDER_TEMPLATED = frozenset({"remoteAddress", "remotePort", "template"})

SENT_OK = "Message successfully sent."


class _Failure(Exception):
    """A network step failed; ``status`` is what ``send`` reports."""

    def __init__(self, status: Status, summary: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.summary = summary
        self.detail = detail

    def response(self) -> Response:
        return Response(self.status, status_message=self.summary, error=self.detail)


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass
class _Connection:
    sock: trio.SocketStream
    stream: trio.abc.Stream  # ``sock``, or a TLS stream over it
    key: tuple[str, int]
    idle_since: float = 0.0

    def close(self) -> None:
        # SocketStream.aclose() is socket.close() plus a checkpoint; closing directly keeps the
        # clean-up synchronous, so it also happens while the task is being cancelled. (A TLS
        # peer sees the connection end without close_notify, which MLLP does not need.)
        self.sock.socket.close()


class TcpSender(DestinationConnector):
    """Sends each message as one MLLP frame and reads one framed response.

    Outcomes follow Mirth's ``TcpDispatcher``: a response (or ``ignoreResponse``) is SENT; a
    response timeout is QUEUED, or ERROR when ``queueOnResponseTimeout`` is false; a failure to
    connect, write or read is QUEUED, which the kernel turns into ERROR when the destination's
    queue is disabled. Network errors never raise.
    """

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        self.send_timeout = get_int(props, "sendTimeout", 5000, minimum=0) / 1000
        self.response_timeout_ms = get_int(props, "responseTimeout", 5000, minimum=0)
        self.buffer_size = get_int(props, "bufferSize", 65536, minimum=1)
        self.keep_connection_open = get_bool(props, "keepConnectionOpen", False)
        self.ignore_response = get_bool(props, "ignoreResponse", False)
        self.queue_on_response_timeout = get_bool(props, "queueOnResponseTimeout", True)
        self.binary = get_bool(props, "dataTypeBinary", False)
        self.charset = resolve_charset(props.get("charsetEncoding", DEFAULT_ENCODING))
        self.framing = framing_from_properties(props, "TCP Sender")
        self.local_address: str | None = None
        if get_bool(props, "overrideLocalBinding", False):
            self.local_address = get_str(props, "localAddress", "0.0.0.0").strip() or None
            if get_int(props, "localPort", 0) != 0:
                raise PropertyError(
                    "TCP Sender: binding a fixed local port (localPort) is not supported yet; use 0"
                )
        self.mllpv2: MLLPv2 | None = mllpv2_from_properties(props, "TCP Sender")
        self.ssl_context: ssl.SSLContext | None = client_ssl_context(props, what="TCP Sender")
        mode = get_str(props, "pluginPointName", "MLLP").strip() or "MLLP"
        if mode not in ("MLLP", "Basic"):
            raise PropertyError(f"TCP Sender: transmission mode {mode!r} is not supported")
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._in_flight = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close every kept-open connection."""
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()

    # -- sending ------------------------------------------------------------------------------

    async def send(self, request: SendRequest) -> Response:
        props = request.properties
        host = get_str(props, "remoteAddress", "127.0.0.1").strip()
        try:
            if not host:
                raise PropertyError("property 'remoteAddress' is empty")
            port = to_int(props.get("remotePort", "6660"), "remotePort", minimum=1, maximum=65535)
            frame = self.framing.encode(self._payload(request))
        except (PropertyError, FrameEncodeError) as exc:
            text = f"TCP Sender: {exc}"
            return Response(Status.ERROR, status_message=text, error=text)
        where = f"{host}:{port}"
        self._in_flight += 1
        self._report("sending", remoteAddress=where)
        try:
            return await self._exchange(host, port, where, frame)
        except _Failure as failure:
            log = LOG.warning if failure.status is Status.QUEUED else LOG.error
            log("TCP Sender of channel %s: %s", self._setup.channel_name, failure.detail)
            return failure.response()
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._report("idle")

    def _payload(self, request: SendRequest) -> bytes:
        template = request.properties.get("template")
        content: str | bytes
        if template is None or template == "" or str(template).strip() == DEFAULT_TEMPLATE:
            # Empty template, or the default one left unrendered: the encoded message itself.
            content = request.encoded
        else:
            content = template if isinstance(template, str | bytes) else str(template)
        if isinstance(content, bytes | bytearray):
            return bytes(content)
        if self.binary:
            # Mirth: with dataTypeBinary the template holds Base64 and the decoded bytes go out.
            try:
                return base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise PropertyError(
                    "dataTypeBinary is set but the message/template is not valid Base64"
                ) from None
        try:
            return content.encode(self.charset)
        except UnicodeEncodeError as exc:
            raise PropertyError(
                f"the message holds {content[exc.start : exc.end]!r} at character {exc.start}, "
                f"which charset {self.charset} cannot encode; not sent rather than altered"
            ) from None

    async def _exchange(self, host: str, port: int, where: str, frame: bytes) -> Response:
        conn = self._take_idle((host, port))
        try:
            if conn is not None:
                try:
                    await self._write(conn, frame, where)
                except _Failure as failure:
                    LOG.info("kept-open connection to %s broke (%s); reconnecting", where, failure)
                    conn.close()
                    conn = None
            if conn is None:
                conn = await self._connect(host, port, where)
                await self._write(conn, frame, where)
            reader = FrameReader(
                conn.stream, self.framing.decoder(), self.buffer_size, strict_tls_eof=True
            )
            if self.mllpv2 is not None:
                await self._await_commit(conn, reader, frame, where)
            if self.ignore_response:
                response = Response(Status.SENT, status_message=SENT_OK)
                reusable = reader.idle
            else:
                response, reusable = await self._read_response(conn, reader, where)
            self._release(conn, reusable)
            conn = None
            return response
        finally:
            if conn is not None:
                conn.close()

    async def _connect(self, host: str, port: int, where: str) -> _Connection:
        ms = self.response_timeout_ms  # Mirth connects with the response timeout
        with trio.move_on_after(timeout_seconds(ms)):
            try:
                sock = await trio.open_tcp_stream(host, port, local_address=self.local_address)
            except OSError as exc:
                raise _Failure(
                    Status.QUEUED,
                    f"Error connecting to {where}",
                    f"TCP Sender could not connect to {where}: {error_text(exc)}",
                ) from None
            if self.ssl_context is None:
                return _Connection(sock, sock, (host, port))
            stream = trio.SSLStream(sock, self.ssl_context, server_hostname=host)
            try:
                await stream.do_handshake()
            except _BROKEN as exc:
                sock.socket.close()
                raise _Failure(
                    Status.QUEUED,
                    f"Error connecting to {where}",
                    f"TCP Sender: TLS handshake with {where} failed: {tls_error_text(exc)}",
                ) from None
            except BaseException:
                sock.socket.close()
                raise
            return _Connection(sock, stream, (host, port))
        # Only reached when the timeout fired.
        raise _Failure(
            Status.QUEUED,
            f"Error connecting to {where}",
            f"TCP Sender could not connect to {where}: no answer within {ms} ms"
            + (" (TCP connection and TLS handshake)" if self.ssl_context is not None else ""),
        )

    async def _write(self, conn: _Connection, frame: bytes, where: str) -> None:
        ms = self.response_timeout_ms
        with trio.move_on_after(timeout_seconds(ms)) as scope:
            try:
                await conn.stream.send_all(frame)
            except _BROKEN as exc:
                raise _Failure(
                    Status.QUEUED,
                    f"Error sending message to {where}",
                    f"TCP Sender: the connection to {where} broke while sending: {_reason(exc)}",
                ) from None
        if scope.cancelled_caught:
            raise _Failure(
                Status.QUEUED,
                f"Error sending message to {where}",
                f"TCP Sender: {where} did not take the message within {ms} ms",
            )

    async def _next(
        self, reader: FrameReader, where: str, what: str
    ) -> bytes | FrameTooLargeError | None:
        """The next frame from the peer (``None``: it closed the connection)."""
        try:
            return await reader.next()
        except _BROKEN as exc:
            raise _Failure(
                Status.QUEUED,
                "Error receiving response",
                f"TCP Sender: error receiving {what} from {where}: {_reason(exc)}",
            ) from None

    async def _await_commit(
        self, conn: _Connection, reader: FrameReader, frame: bytes, where: str
    ) -> None:
        """MLLPv2: wait for the peer's commit acknowledgement, resending the message after a
        NAK, an invalid block or ``responseTimeout`` without answer (Mirth's
        ``MLLPv2StreamHandler.write``); QUEUED when ``maxRetries`` resends did not help."""
        assert self.mllpv2 is not None
        ms = self.response_timeout_ms
        first_cause = ""
        attempts = 0
        while True:
            attempts += 1
            problem = f"no commit acknowledgement within {ms} ms"
            with trio.move_on_after(timeout_seconds(ms)):
                event = await self._next(reader, where, "the commit acknowledgement")
                if event is None:
                    raise _Failure(
                        Status.QUEUED,
                        "Error receiving commit acknowledgement",
                        f"TCP Sender: {where} closed the connection without an MLLPv2 commit "
                        "acknowledgement",
                    )
                if event == self.mllpv2.ack:
                    return
                if event == self.mllpv2.nack:
                    problem = "negative commit acknowledgement received"
                else:
                    problem = "invalid acknowledgement block received"
            first_cause = first_cause or problem
            retries = self.mllpv2.max_retries
            if retries and attempts > retries:
                raise _Failure(
                    Status.QUEUED,
                    "Maximum retry count reached",
                    f"TCP Sender: no MLLPv2 commit acknowledgement from {where} after "
                    f"{attempts} attempt(s); first cause: {first_cause}; last: {problem}",
                )
            LOG.info("TCP Sender: %s from %s; sending the message again", problem, where)
            await self._write(conn, frame, where)

    async def _read_response(
        self, conn: _Connection, reader: FrameReader, where: str
    ) -> tuple[Response, bool]:
        """Read one framed response; returns it and whether the connection may be reused."""
        ms = self.response_timeout_ms
        with trio.move_on_after(timeout_seconds(ms)):
            while True:
                event = await self._next(reader, where, "the response")
                if event is None:
                    if reader.decoder.in_frame:
                        raise _Failure(
                            Status.QUEUED,
                            "Error receiving response",
                            f"TCP Sender: {where} closed the connection in the middle of its "
                            f"response ({reader.decoder.buffered} byte(s) received)",
                        )
                    # Mirth 4.x: the message went out; the peer just closed without answering.
                    return (
                        Response(
                            Status.SENT,
                            status_message="Message successfully sent, but no response received.",
                        ),
                        False,
                    )
                if isinstance(event, FrameTooLargeError):
                    raise _Failure(
                        Status.ERROR,
                        "Error receiving response",
                        f"TCP Sender: response from {where} rejected: {event}",
                    )
                if self.mllpv2 is not None and self.mllpv2.is_commit_frame(event):
                    # A late commit acknowledgement of a message we resent: not the response.
                    continue
                text, note = self._decode_response(event, where)
                if self.mllpv2 is not None:
                    # Commit acknowledgement of the response (Mirth's TcpDispatcher commits it).
                    await self._write(conn, self.framing.encode(self.mllpv2.ack), where)
                response = Response(Status.SENT, message=text, status_message=SENT_OK + note)
                return response, reader.idle
        status = Status.QUEUED if self.queue_on_response_timeout else Status.ERROR
        raise _Failure(
            status,
            "Timeout waiting for response",
            f"TCP Sender: timeout waiting for a response from {where} after {ms} ms",
        )

    def _decode_response(self, payload: bytes, where: str) -> tuple[str, str]:
        try:
            return payload.decode(self.charset), ""
        except UnicodeDecodeError as exc:
            bad = payload[exc.start : exc.end].hex().upper()
            note = (
                f" The response held bytes that are not valid {self.charset} (first: 0x{bad} at "
                f"offset {exc.start}); they were replaced with U+FFFD."
            )
            LOG.warning("response from %s:%s", where, note)
            return payload.decode(self.charset, errors="replace"), note

    # -- kept-open connections ----------------------------------------------------------------

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        now = trio.current_time()
        while pool:
            conn = pool.pop()
            if self.send_timeout and now - conn.idle_since > self.send_timeout:
                conn.close()  # idle longer than sendTimeout: Mirth would have closed it
                continue
            if peer_closed_or_talking(conn.sock):
                conn.close()
                continue
            return conn
        return None

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if self.keep_connection_open and reusable:
            conn.idle_since = trio.current_time()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()

    def _report(self, state: str, **details: Any) -> None:
        self._setup.report_state(state, details)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(exc, ssl.SSLEOFError) or isinstance(cause, ssl.SSLEOFError):
        return (
            "the TLS connection was cut without close_notify (a server refusing the client "
            "certificate does this)"
        )
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        return tls_error_text(exc)
    return error_text(exc)
