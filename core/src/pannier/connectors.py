"""The contract between the kernel and connector plugins.

A connector plugin contributes :class:`ConnectorType` objects through the
``pannier_register_connectors`` hook. The kernel builds one connector instance per deployed
channel connector by calling ``ConnectorType.factory(setup)``.

* A **source** connector (``mode="source"``) receives messages from the outside world and hands
  each one to the kernel with ``await dispatcher.dispatch(raw)``. That call returns only after the
  message is durably stored and processed as the channel's response settings require, with the
  response (for example an HL7 ACK) the connector should send back.
* A **destination** connector (``mode="destination"``) delivers one message per
  ``await send(request)`` call and says how it went with a :class:`Response`.

Connectors run on trio. Blocking work (file or database I/O) goes to a thread: per-message
work to the connector's own :class:`pannier.threads.OwnThread`, occasional calls to
``trio.to_thread.run_sync``; a connector never blocks the event loop.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import trio

from pannier.model.status import Status

ConnectorMode = Literal["source", "destination"]
_log = logging.getLogger("pannier.connectors")


@dataclass(frozen=True)
class Response:
    """The outcome of sending a message, or the response a source returns to its client.

    Mirrors Mirth's ``Response`` (stored as content type RESPONSE). ``status`` is SENT, ERROR,
    QUEUED or FILTERED; anything else is treated as ERROR, as Mirth's ``Response.fixStatus`` does.
    """

    status: Status
    message: str = ""
    status_message: str = ""
    error: str = ""


@dataclass
class RawMessage:
    """A message as a source connector received it.

    ``content`` is text, or bytes for binary sources. ``source_map`` carries what the connector
    knows about where the message came from (remote address, file name, HTTP headers...); it is
    stored as the SOURCE_MAP content and visible to scripts.
    """

    content: str | bytes
    source_map: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchResult:
    """What :meth:`Dispatcher.dispatch` returns to the source connector.

    ``response`` is the selected response to write back (``None`` when the channel responds
    with nothing); ``message_id`` is the stored message's id (``None`` when storage failed
    before an id was given).
    """

    message_id: int | None
    response: Response | None


class Dispatcher(Protocol):
    """Handed to a source connector's ``run``: the door into the channel."""

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        """Store and process one message; return once the response is known.

        Safe to call concurrently from many tasks (one per client connection, say). Raises
        :class:`ChannelStoppedError` when the channel is stopping and takes no new messages.
        """
        ...


class ChannelStoppedError(Exception):
    """The channel is stopping or stopped and accepts no new messages."""


class ChannelNotDeployedError(ChannelStoppedError):
    """No channel with that id is deployed on this engine."""


class Router(Protocol):
    """Sends a message into another channel of the same engine (Mirth's ``router`` and the
    Channel Writer): the target channel stores and processes it as if its source had received
    it, and the call returns that channel's result."""

    async def route(self, channel_id: str, message: RawMessage) -> DispatchResult:
        """Raises :class:`ChannelNotDeployedError` when no such channel is deployed here, and
        :class:`ChannelStoppedError` when it is stopping."""
        ...


def _always() -> bool:
    return True


@dataclass(frozen=True)
class ConnectorSetup:
    """Everything the kernel tells a connector when it builds it for a deployed channel."""

    channel_id: str
    channel_name: str
    metadata_id: int
    """0 for the source, the destination's ``metaDataId`` otherwise."""
    name: str
    """"Source" for the source connector, the destination's name otherwise."""
    properties: Mapping[str, Any]
    """The connector's properties: the type's defaults overlaid by the channel's values."""
    report_state: Callable[[str, Mapping[str, Any]], None]
    """Call ``report_state("idle" | "receiving" | "sending" | "connected" | ..., details)`` on every
    state change; the kernel forwards it to the ``pannier_connector_state_changed`` observers.
    It never raises (an observer's error is logged by the kernel), so call it directly."""
    base_directory: str = "."
    """Directory that relative paths in properties are resolved against (the config file's)."""
    router: Router | None = None
    """The engine's router, for connectors that hand messages to other channels."""
    should_poll: Callable[[], bool] = _always
    """Polling sources (File Reader, Database Reader) call this before each poll and skip the
    poll when it returns False. A single engine always says yes; in a cluster only the node
    holding the channel's polling lease does, so exactly one node polls."""


async def run_polls(
    setup: ConnectorSetup,
    poll: Callable[[], Awaitable[None]],
    *,
    interval: float,
    on_start: bool = False,
    who: str = "polling source",
) -> None:
    """Call ``poll()`` every ``interval`` seconds until cancelled: the loop of every polling
    source (Mirth's ``pollConnectorProperties``, INTERVAL polling).

    The first poll is at once when ``on_start`` (``pollOnStart``), else after one interval.
    Each poll is skipped when ``setup.should_poll()`` says another node polls this channel
    (or raises: logged, skipped). Nothing a poll raises stops the loop: it is logged and the
    next poll comes at its time, so a database or directory that is away for a while only
    costs the polls it missed."""
    if not on_start:
        await trio.sleep(interval)
    while True:
        try:
            wanted = bool(setup.should_poll())
        except Exception:
            _log.exception(
                "%s of channel %s: should_poll() raised; poll skipped", who, setup.channel_name
            )
            wanted = False
        if wanted:
            try:
                await poll()
            except Exception:
                _log.exception("%s of channel %s: poll failed", who, setup.channel_name)
        await trio.sleep(interval)


@dataclass(frozen=True)
class SendRequest:
    """One message for a destination connector to deliver.

    ``properties`` are the connector's properties with every ``${...}`` template in the fields
    the connector type marked as templated already replaced for this message.
    """

    channel_id: str
    message_id: int
    metadata_id: int
    encoded: str | bytes
    """The message as the destination's transformer encoded it (what should be sent)."""
    properties: Mapping[str, Any]
    maps: Mapping[str, Any] = field(default_factory=dict)
    """A read-only merged view of the message's maps (connector, channel, source)."""


class SourceConnector(ABC):
    """Base class for source connectors."""

    @abstractmethod
    async def run(
        self,
        dispatcher: Dispatcher,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive messages until cancelled.

        Call ``task_status.started(info)`` once the connector is ready to receive (for a listener:
        the port is bound; ``info`` may carry the bound address, useful with port 0). The kernel
        starts sources with ``await nursery.start(connector.run, dispatcher)``, so "started" means
        ready. Stopping the channel cancels this task; clean up in ``finally`` blocks.
        """


class DestinationConnector(ABC):
    """Base class for destination connectors."""

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Prepare to send (open pools, check configuration). Called once at channel start."""

    async def stop(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release what ``start`` acquired. Called once at channel stop."""

    @abstractmethod
    async def send(self, request: SendRequest) -> Response:
        """Deliver one message and report the outcome.

        Return ``Response(Status.SENT, ...)`` on success, ``Status.ERROR`` (with ``error``) on a
        failure the kernel should record, or ``Status.QUEUED`` to ask for a retry later. An
        exception is treated as ERROR with its text as the error.
        """


@dataclass(frozen=True)
class ConnectorType:
    """A kind of connector a plugin provides, named as in Mirth ("TCP Listener", "File Writer")."""

    transport_name: str
    mode: ConnectorMode
    factory: Callable[[ConnectorSetup], SourceConnector | DestinationConnector]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Every property the connector understands, with its default value."""
    templated: frozenset[str] = frozenset()
    """Destination properties whose ``${...}`` templates the kernel replaces per message."""
    description: str = ""
    mirth_properties_class: str | None = None
    """Mirth's properties class (``com.mirth.connect.connectors.tcp.TcpReceiverProperties``)."""
