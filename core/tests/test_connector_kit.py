"""The connector conformance kit catches connectors that break the contract."""

from __future__ import annotations

import pytest
import trio
from pannier import (
    ChannelNotDeployedError,
    ConnectorType,
    DestinationConnector,
    RawMessage,
    Response,
    SourceConnector,
    Status,
)
from pannier.testing import (
    KIT_CHANNEL_ID,
    KIT_TARGET_CHANNEL_ID,
    RecordingRouter,
    check_connector,
)


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


# --- connectors that need the router (Channel Reader / Channel Writer) ----------------------------


class Quiet(SourceConnector):
    """Receives nothing itself: other channels route messages to its channel."""

    def __init__(self, setup):
        self.setup = setup

    async def run(self, dispatcher, *, task_status=trio.TASK_STATUS_IGNORED):
        self.setup.report_state("idle", {})
        task_status.started()
        await trio.sleep_forever()


class Forwarder(DestinationConnector):
    """Routes to ``target`` and lets the router's errors escape (it should not)."""

    def __init__(self, setup):
        self.router = setup.router

    async def send(self, request):
        result = await self.router.route(request.properties["target"], RawMessage("x"))
        return result.response


async def test_a_router_fed_source_gets_its_messages_through_the_kits_router() -> None:
    router = RecordingRouter()
    await check_connector(ConnectorType("Quiet", "source", Quiet), router=router, timeout=5)
    assert [channel for channel, _ in router.routed] == [KIT_CHANNEL_ID] * 3


async def test_the_kits_router_answers_like_the_engine() -> None:
    kind = ConnectorType("Forwarder", "destination", Forwarder, defaults={"target": ""})
    router = RecordingRouter()
    await check_connector(kind, properties={"target": KIT_TARGET_CHANNEL_ID}, router=router)
    assert router.routed[0][0] == KIT_TARGET_CHANNEL_ID
    # a channel that is not deployed raises, as the engine's router does; the kit catches a
    # destination that lets it escape instead of answering QUEUED
    with pytest.raises(ChannelNotDeployedError):
        await check_connector(
            kind,
            properties={"target": KIT_TARGET_CHANNEL_ID},
            failing_properties={"target": "nowhere"},
        )
