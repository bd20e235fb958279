"""The conformance kit for connectors: :func:`check_connector`.

A source connector is started as the kernel starts it (``nursery.start(run, dispatcher)``),
fed one message through ``deliver`` (which the caller writes: send over MLLP, drop a file,
POST a request), and must: report "started" only when ready, hand the message to the
dispatcher as a :class:`~pannier.RawMessage`, report states, keep serving after a dispatch
that raised, and stop promptly when cancelled.

A destination connector must start, answer ``send`` with a Response of a final status
(SENT, ERROR, QUEUED or FILTERED), report a failed delivery (``failing_properties``) as
QUEUED or ERROR instead of raising, and stop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from pannier.connectors import (
    ConnectorSetup,
    ConnectorType,
    DestinationConnector,
    DispatchResult,
    RawMessage,
    Response,
    SendRequest,
    SourceConnector,
)
from pannier.model.status import Status

FINAL = (Status.SENT, Status.ERROR, Status.QUEUED, Status.FILTERED)


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
    kind: ConnectorType, properties: Mapping[str, Any] | None, base: str, states: list[str]
) -> ConnectorSetup:
    merged = {**kind.defaults, **(properties or {})}
    merged.pop("responseVariable", None) if kind.mode == "source" else None
    return ConnectorSetup(
        channel_id="00000000-0000-0000-0000-00000000c0de",
        channel_name="conformance",
        metadata_id=0 if kind.mode == "source" else 1,
        name="Source" if kind.mode == "source" else "Destination",
        properties=merged,
        report_state=lambda state, details: states.append(state),
        base_directory=base,
    )


async def check_connector(
    kind: ConnectorType,
    *,
    properties: Mapping[str, Any] | None = None,
    deliver: Callable[[Any], Awaitable[None]] | None = None,
    failing_properties: Mapping[str, Any] | None = None,
    base_directory: str = ".",
    timeout: float = 10.0,
) -> None:
    """Run the conformance checks for ``kind`` (see the module docstring). ``deliver``
    (sources) receives what ``run`` passed to ``task_status.started`` and makes the source
    receive one message."""
    states: list[str] = []
    if kind.mode == "source":
        assert deliver is not None, "a source connector's check needs deliver"
        connector = kind.factory(_setup(kind, properties, base_directory, states))
        assert isinstance(connector, SourceConnector), "factory must build a SourceConnector"
        dispatcher = _Dispatcher()
        try:
            await _exercise_source(connector, dispatcher, deliver, timeout)
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
    connector = kind.factory(_setup(kind, properties, base_directory, states))
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
        failing = kind.factory(_setup(kind, failing_properties, base_directory, states))
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


async def _exercise_source(
    connector: SourceConnector,
    dispatcher: _Dispatcher,
    deliver: Callable[[Any], Awaitable[None]],
    timeout: float,
) -> None:
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(connector.run, dispatcher)
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
            nursery.cancel_scope.cancel()


def _request(
    connector: Any, kind: ConnectorType, properties: Mapping[str, Any] | None
) -> SendRequest:
    merged = {**kind.defaults, **(properties or {})}
    message = "MSH|^~\\&|KIT|CONFORMANCE|||20260101000000||ADT^A01|KIT1|P|2.5.1\r"
    for key in kind.templated:
        if isinstance(merged.get(key), str):
            merged[key] = merged[key].replace("${message.encodedData}", message)
    return SendRequest(
        channel_id="00000000-0000-0000-0000-00000000c0de",
        message_id=1,
        metadata_id=1,
        encoded=message,
        properties=merged,
    )
