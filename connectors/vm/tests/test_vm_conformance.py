"""The Channel Reader and Channel Writer pass the kernel's connector conformance kit, with the
kit's recording router standing in for the engine's."""

from __future__ import annotations

from pannier.testing import (
    KIT_CHANNEL_ID,
    KIT_TARGET_CHANNEL_ID,
    RecordingRouter,
    check_connector,
)
from pannier_vm import SOURCE_CHANNEL_ID, SOURCE_MESSAGE_ID
from pannier_vm.plugin import pannier_register_connectors


def connector(transport: str):
    return next(c for c in pannier_register_connectors() if c.transport_name == transport)


async def test_channel_reader_conforms() -> None:
    router = RecordingRouter()
    # no deliver: the kit routes each message to the reader's channel, as a Channel Writer would
    await check_connector(connector("Channel Reader"), router=router)
    assert [channel for channel, _ in router.routed] == [KIT_CHANNEL_ID] * 3


async def test_channel_writer_conforms() -> None:
    router = RecordingRouter()
    await check_connector(
        connector("Channel Writer"),
        properties={"channelId": KIT_TARGET_CHANNEL_ID},
        failing_properties={"channelId": "11111111-2222-3333-4444-555555555555"},
        router=router,
    )
    # the successful send was routed, with Mirth's chain keys in the target's source map
    [(target, message)] = [item for item in router.routed if item[0] == KIT_TARGET_CHANNEL_ID]
    assert target == KIT_TARGET_CHANNEL_ID
    assert str(message.content).startswith("MSH|^~\\&|KIT|")
    assert message.source_map[SOURCE_CHANNEL_ID] == KIT_CHANNEL_ID
    assert message.source_map[SOURCE_MESSAGE_ID] == 1
    # the failing send tried the channel that is not deployed
    assert [target for target, _ in router.routed][-1] == "11111111-2222-3333-4444-555555555555"


async def test_channel_writer_with_routing_off_conforms_without_routing() -> None:
    router = RecordingRouter()
    await check_connector(connector("Channel Writer"), router=router)  # channelId = "none"
    assert router.routed == []
