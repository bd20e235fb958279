"""The "TCP Listener" source connector in MLLP mode (Mirth's ``TcpReceiver``, server mode)."""

from __future__ import annotations

import logging
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
from pannier.net import open_listeners

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
from pannier_mllp.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
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
    # transmissionModeProperties (MLLP mode)
    "pluginPointName": "MLLP",
    "startOfMessageBytes": "0B",
    "endOfMessageBytes": "1C0D",
    "useMLLPv2": False,
    # Pannier's own
    "maxFrameSize": DEFAULT_MAX_FRAME_SIZE,
    # sourceConnectorProperties: the kernel's (response selection), not read here; this is the
    # TcpReceiverProperties constructor's default.
    "responseVariable": "Auto-generate (After source transformer)",
}

_BACKLOG = 256  # as Mirth's TcpReceiver.DEFAULT_BACKLOG
RESPONSE_WRITE_LIMIT = 10.0
"""Seconds a client gets to take a response when ``receiveTimeout`` is 0 (Mirth waits forever)."""


class TcpListener(SourceConnector):
    """Accepts MLLP clients and hands each framed message to the channel.

    One task per connection, at most ``maxConnections`` at once (further clients wait in the
    listen backlog until a slot frees). Messages on one connection are processed in order: the
    next frame is read after the previous one's response was written.
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
        self._connections = 0
        self._dispatching = 0

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
                    "TCP Listener of channel %s listening on %s:%s",
                    self._setup.channel_name,
                    bound[0],
                    bound[1],
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
        self, stream: trio.SocketStream, slots: trio.Semaphore, dispatcher: Dispatcher
    ) -> None:
        label = "unknown client"
        counted = False
        try:
            try:
                local = stream.socket.getsockname()
                remote = stream.socket.getpeername()
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
                await self._serve(stream, dispatcher, source_map, label)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                LOG.info("connection from %s broke: %s", label, error_text(exc))
            except Exception:
                LOG.exception("unexpected error on the connection from %s; closing it", label)
        finally:
            slots.release()
            if counted:
                self._connections -= 1
                self._report("connected" if self._connections else "idle")
            stream.socket.close()
            LOG.debug("connection from %s closed", label)

    async def _serve(
        self,
        stream: trio.SocketStream,
        dispatcher: Dispatcher,
        source_map: dict[str, Any],
        label: str,
    ) -> None:
        decoder = self.framing.decoder()
        while True:
            data = await self._receive(stream, decoder, label)
            if data is None:
                return
            skipped_before = decoder.skipped_bytes
            events = decoder.feed(data)
            if decoder.skipped_bytes != skipped_before:
                LOG.debug(
                    "skipped %d byte(s) outside MLLP frames from %s",
                    decoder.skipped_bytes - skipped_before,
                    label,
                )
            for index, event in enumerate(events):
                if isinstance(event, FrameTooLargeError):
                    LOG.error("%s (from %s); closing the connection", event, label)
                    return
                if not await self._handle_frame(stream, dispatcher, event, source_map, label):
                    return
                if not self.keep_connection_open:
                    left = len(events) - index - 1
                    if left or decoder.buffered:
                        LOG.warning(
                            "keepConnectionOpen is false: closing the connection from %s after "
                            "one message; %d further frame(s) and %d buffered byte(s) dropped",
                            label,
                            left,
                            decoder.buffered,
                        )
                    return

    async def _receive(
        self, stream: trio.SocketStream, decoder: FrameDecoder, label: str
    ) -> bytes | None:
        """The next bytes from the client, or ``None`` when the connection should end."""
        while True:
            if self.receive_timeout > 0:
                with trio.move_on_after(self.receive_timeout):
                    data = await stream.receive_some(self.buffer_size)
                    break
                # Timed out (Mirth: SO_TIMEOUT = receiveTimeout).
                timeout_ms = round(self.receive_timeout * 1000)
                if decoder.in_frame:
                    LOG.warning(
                        "no data from %s for %d ms in the middle of a frame (%d byte(s) "
                        "received); discarding them and closing the connection",
                        label,
                        timeout_ms,
                        decoder.buffered,
                    )
                    return None
                if not self.keep_connection_open:
                    LOG.info("no message from %s within %d ms; closing", label, timeout_ms)
                    return None
                continue  # idle kept-open connection: keep waiting, as Mirth does
            data = await stream.receive_some(self.buffer_size)
            break
        if not data:
            if decoder.in_frame:
                LOG.warning(
                    "%s closed the connection in the middle of a frame; %d byte(s) discarded "
                    "(an incomplete message is never processed)",
                    label,
                    decoder.buffered,
                )
            return None
        return data

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
        stream: trio.SocketStream,
        dispatcher: Dispatcher,
        payload: bytes,
        source_map: dict[str, Any],
        label: str,
    ) -> bool:
        """Dispatch one message and write its response; False when the connection must end."""
        raw = self._raw_message(payload, source_map, label)
        self._dispatching += 1
        self._report("receiving", remoteAddress=label)
        try:
            result = await dispatcher.dispatch(raw)
        except ChannelStoppedError:
            LOG.info("channel is stopping: message from %s not taken; closing", label)
            return False
        except Exception:
            LOG.exception("dispatching a message from %s failed; closing the connection", label)
            return False
        finally:
            self._dispatching -= 1
            if not self._dispatching:
                self._report("idle")
        response = result.response
        if response is None or not response.message:
            return True
        try:
            data = self.framing.encode(self._encode_response(response.message, label))
        except FrameEncodeError as exc:
            LOG.error("response to message %s from %s not sent: %s", result.message_id, label, exc)
            return False
        # The message is stored by now, so the response is written even if the channel stop
        # cancels us meanwhile (shielded), but never for longer than the write limit.
        limit = self.receive_timeout if self.receive_timeout > 0 else RESPONSE_WRITE_LIMIT
        try:
            with trio.CancelScope(shield=True), trio.move_on_after(limit) as scope:
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            LOG.warning(
                "response to message %s could not be sent to %s: %s",
                result.message_id,
                label,
                error_text(exc),
            )
            return False
        if scope.cancelled_caught:
            LOG.warning(
                "%s did not take the response to message %s within %g s; closing",
                label,
                result.message_id,
                limit,
            )
            return False
        return True

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
    if get_bool(props, "useMLLPv2", False):
        raise PropertyError("TCP Listener: MLLPv2 (useMLLPv2=true) is not supported yet")
    mode = get_str(props, "pluginPointName", "MLLP").strip() or "MLLP"
    if mode not in ("MLLP", "Basic"):
        raise PropertyError(
            f"TCP Listener: transmission mode {mode!r} is not supported (MLLP only)"
        )
