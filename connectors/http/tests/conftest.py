"""Fixtures for the HTTP plugin's tests: an in-test channel (Dispatcher) and running listeners.

Test modules cannot import this file (``--import-mode=importlib``), so helpers are fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from pannier import ConnectorSetup, DispatchResult, RawMessage, Response, Status
from pannier_http import LISTENER_DEFAULTS, HttpListener


class RecordingDispatcher:
    """Records every message and answers with ``respond(raw)`` (a Response, or None)."""

    def __init__(
        self,
        respond: Callable[[RawMessage], Response | None] | None = None,
        fail: BaseException | None = None,
    ) -> None:
        self.messages: list[RawMessage] = []
        self.respond = respond or (lambda raw: Response(Status.SENT, message="OK"))
        self.fail = fail

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        await trio.sleep(0)
        if self.fail is not None:
            raise self.fail
        self.messages.append(raw)
        return DispatchResult(len(self.messages), self.respond(raw))


def make_setup(defaults: Any, states: list[Any] | None = None, **props: Any) -> ConnectorSetup:
    record: list[Any] = states if states is not None else []
    return ConnectorSetup(
        channel_id="c1",
        channel_name="test",
        metadata_id=0,
        name="Source",
        properties={**defaults, **props},
        report_state=lambda state, details: record.append((state, dict(details))),
    )


@pytest.fixture
def recorder_factory() -> Any:
    return RecordingDispatcher


@pytest.fixture
def setup_factory() -> Any:
    return make_setup


@pytest.fixture
async def listen(nursery: trio.Nursery) -> Any:
    """``await listen(dispatcher, **props)`` → the bound port of a running HTTP Listener."""

    async def start(dispatcher: Any, states: list[Any] | None = None, **props: Any) -> int:
        props.setdefault("host", "127.0.0.1")
        props.setdefault("port", 0)
        listener = HttpListener(make_setup(LISTENER_DEFAULTS, states, **props))
        bound = await nursery.start(listener.run, dispatcher)
        return int(bound[1])

    return start
