"""The conformance kit for connectors: :func:`check_connector`.

A source connector is started as the kernel starts it (``nursery.start(run, dispatcher)``),
fed one message through ``deliver`` (which the caller writes: send over MLLP, drop a file,
POST a request), and must: report "started" only when ready, hand the message to the
dispatcher as a :class:`~pannier.RawMessage`, report states, keep serving after a dispatch
that raised, and stop promptly when cancelled.

A destination connector must start, answer ``send`` with a Response of a final status
(SENT, ERROR, QUEUED or FILTERED), report a failed delivery (``failing_properties``) as
QUEUED or ERROR instead of raising, and stop.

Connectors that hand messages to other channels (the Channel Writer) or are fed by other
channels (the Channel Reader) need the engine's router. The kit puts a
:class:`RecordingRouter` in every :class:`~pannier.ConnectorSetup` (pass your own as
``router=`` to look at what was routed): routing to :data:`KIT_TARGET_CHANNEL_ID` succeeds,
routing to :data:`KIT_CHANNEL_ID` (the channel under test) dispatches into the kit while its
source runs, and any other id raises :class:`~pannier.ChannelNotDeployedError`, as the engine
does for a channel that is not deployed. A source given no ``deliver`` is fed through that
router, as another channel's Channel Writer would feed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from pannier.connectors import (
    ChannelNotDeployedError,
    ConnectorSetup,
    ConnectorType,
    DestinationConnector,
    Dispatcher,
    DispatchResult,
    RawMessage,
    Response,
    SendRequest,
    SourceConnector,
)
from pannier.model.status import Status

FINAL = (Status.SENT, Status.ERROR, Status.QUEUED, Status.FILTERED)
KIT_CHANNEL_ID = "00000000-0000-0000-0000-00000000c0de"
"""The id of the channel the connector under test belongs to."""
KIT_TARGET_CHANNEL_ID = "00000000-0000-0000-0000-0000000070a1"
"""A channel the kit's router pretends is deployed: routing there succeeds."""
_KIT_MESSAGE = "MSH|^~\\&|KIT|CONFORMANCE|||20260101000000||ADT^A01|KIT1|P|2.5.1\r"


class RecordingRouter:
    """A :class:`~pannier.Router` for connector tests, standing in for the engine's.

    ``routed`` lists every ``(channel_id, RawMessage)`` routed, in order. Routing to one of
    ``targets`` (by default :data:`KIT_TARGET_CHANNEL_ID`) answers SENT with the response
    message ``routed to <id>``; routing to a channel with an attached dispatcher (the kit
    attaches the source under test as :data:`KIT_CHANNEL_ID` while it runs) dispatches there;
    anything else raises :class:`~pannier.ChannelNotDeployedError`.
    """

    def __init__(self, targets: tuple[str, ...] = (KIT_TARGET_CHANNEL_ID,)) -> None:
        self.targets = set(targets)
        self.routed: list[tuple[str, RawMessage]] = []
        self._dispatchers: dict[str, Dispatcher] = {}

    def attach(self, channel_id: str, dispatcher: Dispatcher) -> None:
        self._dispatchers[channel_id] = dispatcher

    def detach(self, channel_id: str) -> None:
        self._dispatchers.pop(channel_id, None)

    async def route(self, channel_id: str, message: RawMessage) -> DispatchResult:
        self.routed.append((channel_id, message))
        dispatcher = self._dispatchers.get(channel_id)
        if dispatcher is not None:
            return await dispatcher.dispatch(message)
        if channel_id in self.targets:
            response = Response(Status.SENT, f"routed to {channel_id}")
            return DispatchResult(len(self.routed), response)
        raise ChannelNotDeployedError(f"no channel with id {channel_id!r} is deployed")


class _Dispatcher:
    def __init__(self) -> None:
        self.messages: list[RawMessage] = []
        self.fail_next = False
        self.arrived = trio.Event()

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        self.messages.append(raw)
        self.arrived.set()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("conformance kit: dispatch failed on purpose")
        return DispatchResult(len(self.messages), Response(Status.SENT, "conformance-ok"))


def _setup(
    kind: ConnectorType,
    properties: Mapping[str, Any] | None,
    base: str,
    states: list[str],
    router: RecordingRouter,
) -> ConnectorSetup:
    merged = {**kind.defaults, **(properties or {})}
    merged.pop("responseVariable", None) if kind.mode == "source" else None
    return ConnectorSetup(
        channel_id=KIT_CHANNEL_ID,
        channel_name="conformance",
        metadata_id=0 if kind.mode == "source" else 1,
        name="Source" if kind.mode == "source" else "Destination",
        properties=merged,
        report_state=lambda state, details: states.append(state),
        base_directory=base,
        router=router,
    )


async def check_connector(
    kind: ConnectorType,
    *,
    properties: Mapping[str, Any] | None = None,
    deliver: Callable[[Any], Awaitable[None]] | None = None,
    failing_properties: Mapping[str, Any] | None = None,
    base_directory: str = ".",
    timeout: float = 10.0,
    router: RecordingRouter | None = None,
) -> None:
    """Run the conformance checks for ``kind`` (see the module docstring). ``deliver``
    (sources) receives what ``run`` passed to ``task_status.started`` and makes the source
    receive one message; without it the message is routed to the channel under test through
    ``router`` (a :class:`RecordingRouter`, made for the run when not given)."""
    states: list[str] = []
    router = router if router is not None else RecordingRouter()
    if kind.mode == "source":
        connector = kind.factory(_setup(kind, properties, base_directory, states, router))
        assert isinstance(connector, SourceConnector), "factory must build a SourceConnector"
        dispatcher = _Dispatcher()
        if deliver is None:
            deliver = _routed_delivery(router)
        try:
            await _exercise_source(connector, dispatcher, deliver, timeout, router)
        except trio.TooSlowError:
            raise AssertionError(
                f"the source did not start or deliver {len(dispatcher.messages) + 1} "
                f"message(s) within {timeout} s (it must keep serving after a dispatch "
                f"that raised)"
            ) from None
        except BaseExceptionGroup as group:
            raise AssertionError(f"the source connector failed: {group.exceptions[0]!r}") from group
        assert states and all(isinstance(s, str) for s in states), "report states"
        return
    connector = kind.factory(_setup(kind, properties, base_directory, states, router))
    assert isinstance(connector, DestinationConnector), "must build a DestinationConnector"
    with trio.fail_after(timeout):
        await connector.start()
        try:
            response = await connector.send(_request(connector, kind, properties))
            assert isinstance(response, Response), "send must return a Response"
            assert response.status in FINAL, f"send returned status {response.status}"
        finally:
            await connector.stop()
    if failing_properties is not None:
        failing = kind.factory(_setup(kind, failing_properties, base_directory, states, router))
        assert isinstance(failing, DestinationConnector)
        with trio.fail_after(timeout):
            await failing.start()
            try:
                response = await failing.send(_request(failing, kind, failing_properties))
            finally:
                await failing.stop()
        assert response.status in (Status.QUEUED, Status.ERROR), (
            f"a failed delivery must be QUEUED or ERROR, got {response.status}"
        )
        assert response.error, "a failed delivery must say why in Response.error"


def _routed_delivery(router: RecordingRouter) -> Callable[[Any], Awaitable[None]]:
    """How another channel feeds a router-fed source: route one message to its channel."""

    async def deliver(_info: Any) -> None:
        # the kit's own dispatch failure (raised on purpose) reaches the router's caller
        with contextlib.suppress(RuntimeError):
            await router.route(KIT_CHANNEL_ID, RawMessage(_KIT_MESSAGE))

    return deliver


async def _exercise_source(
    connector: SourceConnector,
    dispatcher: _Dispatcher,
    deliver: Callable[[Any], Awaitable[None]],
    timeout: float,
    router: RecordingRouter,
) -> None:
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(connector.run, dispatcher)
            router.attach(KIT_CHANNEL_ID, dispatcher)
            await deliver(info)
            await dispatcher.arrived.wait()
            first = dispatcher.messages[0]
            assert isinstance(first, RawMessage), "dispatch must receive a RawMessage"
            assert isinstance(first.content, str | bytes), "content must be str or bytes"
            assert isinstance(first.source_map, dict), "source_map must be a dict"
            dispatcher.fail_next, dispatcher.arrived = True, trio.Event()
            await deliver(info)
            await dispatcher.arrived.wait()
            dispatcher.arrived = trio.Event()
            await deliver(info)  # still serving after a dispatch that raised
            await dispatcher.arrived.wait()
            router.detach(KIT_CHANNEL_ID)
            nursery.cancel_scope.cancel()


def _request(
    connector: Any, kind: ConnectorType, properties: Mapping[str, Any] | None
) -> SendRequest:
    merged = {**kind.defaults, **(properties or {})}
    message = _KIT_MESSAGE
    for key in kind.templated:
        if isinstance(merged.get(key), str):
            merged[key] = merged[key].replace("${message.encodedData}", message)
    return SendRequest(
        channel_id=KIT_CHANNEL_ID,
        message_id=1,
        metadata_id=1,
        encoded=message,
        properties=merged,
    )
