"""The "TCP Listener" source connector in MLLP mode (Mirth's ``TcpReceiver``, server mode),
with Pannier's TLS / mutual TLS and MLLPv2 commit acknowledgements."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import trio
from pannier import (
    ChannelStoppedError,
    ConnectorSetup,
    Dispatcher,
    RawMessage,
    SourceConnector,
)
from pannier.net import (
    TLS_LISTENER_DEFAULTS,
    accept_tls,
    open_listeners,
    server_ssl_context,
    tls_error_text,
)

from pannier_mllp._mllpv2 import MLLPV2_DEFAULTS, MLLPv2, mllpv2_from_properties
from pannier_mllp._net import error_text
from pannier_mllp._props import (
    DEFAULT_ENCODING,
    PropertyError,
    framing_from_properties,
    get_bool,
    get_int,
    get_str,
    resolve_charset,
)
from pannier_mllp._reader import FrameReader
from pannier_mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameEncodeError,
    FrameTooLargeError,
)

LOG = logging.getLogger("pannier.mllp")

LISTENER_MIRTH_CLASS = "com.mirth.connect.connectors.tcp.TcpReceiverProperties"

LISTENER_DEFAULTS: Mapping[str, Any] = {
    # listenerConnectorProperties
    "host": "0.0.0.0",
    "port": 6661,
    # TcpReceiverProperties
    "maxConnections": 10,
    "receiveTimeout": 0,
    "bufferSize": 65536,
    "keepConnectionOpen": True,
    "dataTypeBinary": False,
    "charsetEncoding": DEFAULT_ENCODING,
    "serverMode": True,
    "respondOnNewConnection": 0,
    # transmissionModeProperties (MLLP mode, MLLPv2 included)
    "pluginPointName": "MLLP",
    "startOfMessageBytes": "0B",
    "endOfMessageBytes": "1C0D",
    **MLLPV2_DEFAULTS,
    # Pannier's own
    "maxFrameSize": DEFAULT_MAX_FRAME_SIZE,
    **TLS_LISTENER_DEFAULTS,
    # sourceConnectorProperties: the kernel's (response selection), not read here; this is the
    # TcpReceiverProperties constructor's default.
    "responseVariable": "Auto-generate (After source transformer)",
}

_BACKLOG = 256  # as Mirth's TcpReceiver.DEFAULT_BACKLOG
RESPONSE_WRITE_LIMIT = 10.0
"""Seconds a client gets to take a response, to finish a TLS handshake or to send an MLLPv2
commit acknowledgement when ``receiveTimeout`` is 0 (Mirth waits forever)."""

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _EndConnection(Exception):
    """The connection must close (the reason was logged)."""


class TcpListener(SourceConnector):
    """Accepts MLLP clients and hands each framed message to the channel.

    One task per connection, at most ``maxConnections`` at once (further clients wait in the
    listen backlog until a slot frees). Messages on one connection are processed in order: the
    next frame is read after the previous one's response was written. With TLS the handshake
    runs in the connection's task, so a client that fails it affects nobody else.
    """

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        self.host = get_str(props, "host", "0.0.0.0").strip()
        self.port = get_int(props, "port", 6661, minimum=0, maximum=65535)
        self.max_connections = get_int(props, "maxConnections", 10, minimum=1)
        self.receive_timeout = get_int(props, "receiveTimeout", 0, minimum=0) / 1000
        self.buffer_size = get_int(props, "bufferSize", 65536, minimum=1)
        self.keep_connection_open = get_bool(props, "keepConnectionOpen", True)
        self.binary = get_bool(props, "dataTypeBinary", False)
        self.charset = resolve_charset(props.get("charsetEncoding", DEFAULT_ENCODING))
        self.framing = framing_from_properties(props, "TCP Listener")
        _check_unsupported(props)
        self.mllpv2: MLLPv2 | None = mllpv2_from_properties(props, "TCP Listener")
        self.ssl_context: ssl.SSLContext | None = server_ssl_context(props, what="TCP Listener")
        self._connections = 0
        self._dispatching = 0

    @property
    def connections(self) -> int:
        """Client connections open right now (each one is a task of the listener)."""
        return self._connections

    @property
    def _limit(self) -> float:
        """Seconds allowed for a response write, a TLS handshake, a commit acknowledgement."""
        return self.receive_timeout if self.receive_timeout > 0 else RESPONSE_WRITE_LIMIT

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
            self.host, self.port, what="TCP Listener", backlog=_BACKLOG
        )
        try:
            slots = trio.Semaphore(self.max_connections)
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, slots, dispatcher, nursery)
                LOG.info(
                    "TCP Listener of channel %s listening on %s:%s%s",
                    self._setup.channel_name,
                    bound[0],
                    bound[1],
                    " (TLS)" if self.ssl_context is not None else "",
                )
                self._report("idle")
                task_status.started(bound)
        finally:
            # Synchronous closes (what aclose() does, minus its checkpoint): they all happen even
            # while this task is being cancelled.
            for listener in listeners:
                listener.socket.close()
            LOG.info("TCP Listener of channel %s stopped", self._setup.channel_name)

    async def _accept_loop(
        self,
        listener: trio.SocketListener,
        slots: trio.Semaphore,
        dispatcher: Dispatcher,
        nursery: trio.Nursery,
    ) -> None:
        while True:
            await slots.acquire()  # wait for a free slot before taking the next client
            try:
                stream = await listener.accept()
            except OSError as exc:
                # EMFILE, ENOBUFS... : the process is short of resources; back off, keep going.
                slots.release()
                LOG.error("TCP Listener: accepting a connection failed (%s); retrying", exc)
                await trio.sleep(0.1)
                continue
            except BaseException:
                slots.release()
                raise
            nursery.start_soon(self._connection, stream, slots, dispatcher)

    async def _connection(
        self, sock: trio.SocketStream, slots: trio.Semaphore, dispatcher: Dispatcher
    ) -> None:
        label = "unknown client"
        counted = False
        try:
            try:
                local = sock.socket.getsockname()
                remote = sock.socket.getpeername()
            except OSError:
                return  # gone before we looked at it
            label = f"{remote[0]}:{remote[1]}"
            source_map = {
                "remoteAddress": remote[0],
                "remotePort": remote[1],
                "localAddress": local[0],
                "localPort": local[1],
            }
            self._connections += 1
            counted = True
            LOG.debug("connection from %s", label)
            self._report("connected", remoteAddress=label)
            try:
                stream = await accept_tls(
                    sock, self.ssl_context, limit=self._limit, label=label, log=LOG
                )
                if stream is None:
                    return
                with contextlib.suppress(_EndConnection):
                    await self._serve(stream, dispatcher, source_map, label)
                if stream is not sock:
                    await _close_tls(stream)
            except _BROKEN as exc:
                LOG.info("connection from %s broke: %s", label, _reason(exc))
            except Exception:
                LOG.exception("unexpected error on the connection from %s; closing it", label)
        finally:
            slots.release()
            if counted:
                self._connections -= 1
                self._report("connected" if self._connections else "idle")
            sock.socket.close()
            LOG.debug("connection from %s closed", label)

    async def _serve(
        self,
        stream: trio.abc.Stream,
        dispatcher: Dispatcher,
        source_map: dict[str, Any],
        label: str,
    ) -> None:
        reader = FrameReader(stream, self.framing.decoder(), self.buffer_size)
        while True:
            event = await self._next_frame(reader, label)
            if event is None:
                return
            if isinstance(event, FrameTooLargeError):
                LOG.error("%s (from %s); closing the connection", event, label)
                return
            if self.mllpv2 is not None and self.mllpv2.is_commit_frame(event):
                # A late commit acknowledgement of a response we resent: not a message.
                LOG.debug("ignoring a stray MLLPv2 commit acknowledgement from %s", label)
                continue
            await self._handle_frame(stream, reader, dispatcher, event, source_map, label)
            if not self.keep_connection_open:
                if not reader.idle:
                    LOG.warning(
                        "keepConnectionOpen is false: closing the connection from %s after one "
                        "message; %d further frame(s) and %d buffered byte(s) dropped",
                        label,
                        len(reader.pending),
                        reader.decoder.buffered,
                    )
                return

    async def _next_frame(
        self, reader: FrameReader, label: str
    ) -> bytes | FrameTooLargeError | None:
        """The next message frame, or ``None`` when the connection should end."""
        while True:
            if self.receive_timeout > 0:
                with trio.move_on_after(self.receive_timeout):
                    event = await reader.next()
                    break
                # Timed out (Mirth: SO_TIMEOUT = receiveTimeout).
                timeout_ms = round(self.receive_timeout * 1000)
                if reader.in_frame:
                    LOG.warning(
                        "no data from %s for %d ms in the middle of a frame (%d byte(s) "
                        "received); discarding them and closing the connection",
                        label,
                        timeout_ms,
                        reader.decoder.buffered,
                    )
                    return None
                if not self.keep_connection_open:
                    LOG.info("no message from %s within %d ms; closing", label, timeout_ms)
                    return None
                continue  # idle kept-open connection: keep waiting, as Mirth does
            event = await reader.next()
            break
        skipped = reader.newly_skipped()
        if skipped:
            LOG.debug("skipped %d byte(s) outside MLLP frames from %s", skipped, label)
        if event is None and reader.decoder.in_frame:
            LOG.warning(
                "%s closed the connection in the middle of a frame; %d byte(s) discarded "
                "(an incomplete message is never processed)",
                label,
                reader.decoder.buffered,
            )
        return event

    def _raw_message(self, payload: bytes, source_map: dict[str, Any], label: str) -> RawMessage:
        if self.binary:
            return RawMessage(payload, dict(source_map))
        try:
            return RawMessage(payload.decode(self.charset), dict(source_map))
        except UnicodeDecodeError as exc:
            bad = payload[exc.start : exc.end].hex().upper()
            problem = (
                f"byte(s) 0x{bad} at offset {exc.start} are not valid {self.charset}; "
                "the message is passed on as bytes, unaltered"
            )
            LOG.warning("message from %s: %s", label, problem)
            return RawMessage(payload, {**source_map, "charsetError": problem})

    async def _handle_frame(
        self,
        stream: trio.abc.Stream,
        reader: FrameReader,
        dispatcher: Dispatcher,
        payload: bytes,
        source_map: dict[str, Any],
        label: str,
    ) -> None:
        """Dispatch one message and write its response; :class:`_EndConnection` when the
        connection must end."""
        raw = self._raw_message(payload, source_map, label)
        self._dispatching += 1
        self._report("receiving", remoteAddress=label)
        try:
            result = await dispatcher.dispatch(raw)
        except ChannelStoppedError:
            LOG.info("channel is stopping: message from %s not taken; closing", label)
            await self._nak(stream, label)
            raise _EndConnection from None
        except Exception:
            if self.mllpv2 is None:
                LOG.exception("dispatching a message from %s failed; closing the connection", label)
                raise _EndConnection from None
            # MLLPv2: the NAK tells the client the message was not stored; it may resend it.
            LOG.exception("dispatching a message from %s failed; answering with a NAK", label)
            await self._nak(stream, label)
            return
        finally:
            self._dispatching -= 1
            if not self._dispatching:
                self._report("idle")
        # The message is stored: its commit acknowledgement and its response are written even
        # if the channel stop cancels us meanwhile (shielded), within the write limit.
        commit = self._commit_block(True)
        response = result.response
        if response is None or not response.message:
            if commit:
                await self._write(stream, commit, "the commit acknowledgement", label)
            return
        try:
            data = self.framing.encode(self._encode_response(response.message, label))
        except FrameEncodeError as exc:
            LOG.error("response to message %s from %s not sent: %s", result.message_id, label, exc)
            if commit:
                await self._write(stream, commit, "the commit acknowledgement", label)
            raise _EndConnection from None
        what = f"the response to message {result.message_id}"
        attempts = 0
        while True:
            attempts += 1
            # The commit block and the first copy of the response go out in one write.
            await self._write(stream, commit + data if attempts == 1 else data, what, label)
            if self.mllpv2 is None:
                return
            problem = await self._await_commit(reader, label)
            if problem is None:
                return
            retries = self.mllpv2.max_retries
            if retries and attempts > retries:
                LOG.warning(
                    "%s: no MLLPv2 commit acknowledgement from %s after %d attempt(s) (%s); "
                    "closing",
                    what,
                    label,
                    attempts,
                    problem,
                )
                raise _EndConnection
            LOG.info("%s to %s: %s; sending it again", what, label, problem)

    def _commit_block(self, stored: bool) -> bytes:
        """MLLPv2: the framed block telling the client whether its message was stored (empty
        in MLLP v1)."""
        if self.mllpv2 is None:
            return b""
        return self.framing.encode(self.mllpv2.ack if stored else self.mllpv2.nack)

    async def _nak(self, stream: trio.abc.Stream, label: str) -> None:
        """MLLPv2: tell the client its message was not stored (nothing in MLLP v1)."""
        if self.mllpv2 is not None:
            block = self._commit_block(False)
            await self._write(stream, block, "the negative commit acknowledgement", label)

    async def _await_commit(self, reader: FrameReader, label: str) -> str | None:
        """MLLPv2: wait for the client's commit acknowledgement of our response; ``None``
        when it came, else why it did not (a NAK, something else, no answer in time)."""
        assert self.mllpv2 is not None
        with trio.move_on_after(self._limit):
            event = await reader.next()
            if event is None:
                LOG.info("%s closed the connection before acknowledging the response", label)
                raise _EndConnection
            if isinstance(event, FrameTooLargeError):
                LOG.error("%s (from %s); closing the connection", event, label)
                raise _EndConnection
            if event == self.mllpv2.ack:
                return None
            if event == self.mllpv2.nack:
                return "negative commit acknowledgement received"
            return "invalid acknowledgement block received"
        return f"no commit acknowledgement within {self._limit:g} s"

    async def _write(self, stream: trio.abc.Stream, data: bytes, what: str, label: str) -> None:
        limit = self._limit
        try:
            # One scope, shielded from the channel's stop but not from its own deadline
            # (two nested scopes cost a visible share of a message's CPU time).
            with trio.CancelScope(shield=True, deadline=trio.current_time() + limit) as scope:
                await stream.send_all(data)
        except _BROKEN as exc:
            LOG.warning("%s could not be sent to %s: %s", what, label, _reason(exc))
            raise _EndConnection from None
        if scope.cancelled_caught:
            LOG.warning("%s did not take %s within %g s; closing", label, what, limit)
            raise _EndConnection

    def _encode_response(self, text: str, label: str) -> bytes:
        try:
            return text.encode(self.charset)
        except UnicodeEncodeError as exc:
            LOG.warning(
                "response to %s holds characters %s cannot encode (%r); sent with '?' in their "
                "place, as Mirth does",
                label,
                self.charset,
                text[exc.start : exc.end],
            )
            return text.encode(self.charset, errors="replace")


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        return tls_error_text(exc)
    return error_text(exc)


async def _close_tls(stream: trio.abc.Stream) -> None:
    """Send TLS ``close_notify`` (best effort, briefly); the socket is closed by the caller."""
    with trio.move_on_after(1), contextlib.suppress(*_BROKEN):
        await stream.aclose()


def _check_unsupported(props: Mapping[str, Any]) -> None:
    """Refuse Mirth settings this connector does not implement rather than ignore them."""
    if not get_bool(props, "serverMode", True):
        raise PropertyError(
            "TCP Listener: client mode (serverMode=false) is not supported yet; only server mode is"
        )
    if get_int(props, "respondOnNewConnection", 0) != 0:
        raise PropertyError(
            "TCP Listener: responding on a new connection (respondOnNewConnection) is not "
            "supported yet; responses go back on the same connection"
        )
    mode = get_str(props, "pluginPointName", "MLLP").strip() or "MLLP"
    if mode not in ("MLLP", "Basic"):
        raise PropertyError(
            f"TCP Listener: transmission mode {mode!r} is not supported (MLLP only)"
        )
