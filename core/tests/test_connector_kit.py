"""The connector conformance kit catches connectors that break the contract."""

from __future__ import annotations

import pytest
import trio
from pannier import (
    ConnectorType,
    DestinationConnector,
    RawMessage,
    Response,
    SourceConnector,
    Status,
)
from pannier.testing import check_connector


class Fragile(SourceConnector):
    """Dies when a dispatch raises, instead of serving on."""

    def __init__(self, setup):
        self.setup = setup
        self.inbox: trio.MemoryReceiveChannel | None = None

    async def run(self, dispatcher, *, task_status=trio.TASK_STATUS_IGNORED):
        send, self.inbox = trio.open_memory_channel(10)
        self.send = send
        self.setup.report_state("idle", {})
        task_status.started(self)
        async for text in self.inbox:
            await dispatcher.dispatch(RawMessage(text))


class Raising(DestinationConnector):
    def __init__(self, setup):
        self.fail = setup.properties["fail"]

    async def send(self, request):
        if self.fail:
            raise ConnectionRefusedError("refused")
        return Response(Status.SENT)


async def test_a_source_that_dies_on_a_failed_dispatch_fails_the_kit() -> None:
    kind = ConnectorType("Fragile", "source", Fragile)

    async def deliver(source: Fragile) -> None:
        await source.send.send("MSH|x")

    with pytest.raises(AssertionError, match=r"the source connector failed: .*on purpose"):
        await check_connector(kind, deliver=deliver, timeout=2)


async def test_a_destination_that_raises_on_failure_fails_the_kit() -> None:
    kind = ConnectorType("Raising", "destination", Raising, defaults={"fail": False})
    with pytest.raises(ConnectionRefusedError):
        await check_connector(kind, failing_properties={"fail": True})
