"""The Channel Writer and Channel Reader on their own, with a fake router."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from pannier import (
    ChannelStoppedError,
    ConnectorSetup,
    DispatchResult,
    RawMessage,
    Response,
    SendRequest,
    Status,
)
from pannier_vm import READER_DEFAULTS, WRITER_DEFAULTS, ChannelReader, ChannelWriter
from pannier_vm.writer import map_variable_names


class FakeRouter:
    def __init__(self, fail: Exception | None = None, answer: str | None = "ok") -> None:
        self.fail = fail
        self.answer = answer
        self.routed: list[tuple[str, RawMessage]] = []

    async def route(self, channel_id: str, message: RawMessage) -> DispatchResult:
        if self.fail is not None:
            raise self.fail
        self.routed.append((channel_id, message))
        response = None if self.answer is None else Response(Status.SENT, message=self.answer)
        return DispatchResult(message_id=7, response=response)


def setup(router: Any, states: list[str] | None = None, **properties: Any) -> ConnectorSetup:
    return ConnectorSetup(
        channel_id="here",
        channel_name="Here",
        metadata_id=1,
        name="Writer",
        properties={**WRITER_DEFAULTS, **properties},
        report_state=lambda state, details: (states if states is not None else []).append(state),
        router=router,
    )


def request(maps: dict[str, Any] | None = None, **properties: Any) -> SendRequest:
    return SendRequest(
        channel_id="here",
        message_id=42,
        metadata_id=1,
        encoded="MSG",
        properties={**WRITER_DEFAULTS, "channelTemplate": "", **properties},
        maps=maps or {},
    )


async def test_send_routes_and_answers_with_the_target_response() -> None:
    router = FakeRouter()
    states: list[str] = []
    writer = ChannelWriter(setup(router, states, channelId="there"))
    response = await writer.send(request(channelId="there"))
    assert response == Response(
        Status.SENT, message="ok", status_message="Message routed successfully to channel id: there"
    )
    ((target, raw),) = router.routed
    assert target == "there"
    assert raw.content == "MSG", "an empty template sends the encoded message"
    assert raw.source_map == {"sourceChannelId": "here", "sourceMessageId": 42}
    assert states == ["sending", "idle"]


async def test_no_selected_response_answers_empty() -> None:
    writer = ChannelWriter(setup(FakeRouter(answer=None)))
    response = await writer.send(request(channelId="there"))
    assert response.status == Status.SENT and response.message == ""


async def test_chain_extends_incoming_lists_and_copies_map_variables() -> None:
    router = FakeRouter()
    writer = ChannelWriter(setup(router))
    maps = {
        "sourceChannelId": "b",
        "sourceMessageId": 2,
        "sourceChannelIds": ["a", "b"],
        "sourceMessageIds": [1, 2],
        "mrn": "123",
        "empty": None,
    }
    incoming_lists = (list(maps["sourceChannelIds"]), list(maps["sourceMessageIds"]))
    await writer.send(
        request(maps, channelId="there", channelTemplate="T", mapVariables=["mrn", "empty", "x"])
    )
    ((_, raw),) = router.routed
    assert raw.content == "T"
    assert raw.source_map == {
        "sourceChannelIds": ["a", "b", "here"],
        "sourceMessageIds": [1, 2, 42],
        "sourceChannelId": "here",
        "sourceMessageId": 42,
        "mrn": "123",
    }
    assert (maps["sourceChannelIds"], maps["sourceMessageIds"]) == incoming_lists, "not mutated"


async def test_second_hop_starts_the_lists_from_the_single_ids() -> None:
    router = FakeRouter()
    await ChannelWriter(setup(router)).send(
        request({"sourceChannelId": "a", "sourceMessageId": 1}, channelId="there")
    )
    ((_, raw),) = router.routed
    assert raw.source_map["sourceChannelIds"] == ["a", "here"]
    assert raw.source_map["sourceMessageIds"] == [1, 42]


async def test_disabled_writer_routes_nothing() -> None:
    router = FakeRouter()
    response = await ChannelWriter(setup(router)).send(request())  # default channelId "none"
    assert response.status == Status.SENT
    assert response.status_message == "Message routed successfully to channel id: none"
    assert router.routed == []


@pytest.mark.parametrize(
    ("fail", "words"),
    [
        (ChannelStoppedError("channel is stopping"), "is stopped"),
        (RuntimeError("boom"), "RuntimeError: boom"),
    ],
)
async def test_routing_failures_are_queued_with_the_channel_named(
    fail: Exception, words: str
) -> None:
    response = await ChannelWriter(setup(FakeRouter(fail=fail))).send(request(channelId="there"))
    assert response.status == Status.QUEUED, "as Mirth: retried when queued, else an error"
    assert response.status_message == "Error routing message to channel id: there"
    assert "there" in response.error and words in response.error


async def test_without_a_router_it_fails_cleanly() -> None:
    response = await ChannelWriter(setup(None)).send(request(channelId="there"))
    assert response.status == Status.QUEUED and "no router" in response.error


def test_map_variable_names_accepts_lists_and_text() -> None:
    assert map_variable_names(["a", "b"]) == ["a", "b"]
    assert map_variable_names("['a', 'b']") == ["a", "b"]
    assert map_variable_names("a, b c") == ["a", "b", "c"]
    assert map_variable_names("") == [] and map_variable_names(None) == []


async def test_channel_reader_starts_and_reports_state() -> None:
    states: list[str] = []
    reader = ChannelReader(
        ConnectorSetup(
            channel_id="here",
            channel_name="Here",
            metadata_id=0,
            name="Source",
            properties=dict(READER_DEFAULTS),
            report_state=lambda state, details: states.append(state),
        )
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(reader.run, None)
        assert states == ["idle"]
        nursery.cancel_scope.cancel()
    assert states == ["idle", "disconnected"]
    assert READER_DEFAULTS == {"responseVariable": "None"}
