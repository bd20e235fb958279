"""Fixtures for the MLLP plugin's tests: an in-test channel (Dispatcher) and running listeners.

Test modules cannot import this file (``--import-mode=importlib``), so helpers are handed out
as fixtures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from pannier import ConnectorSetup, DispatchResult, RawMessage, Response, Status
from pannier_mllp import LISTENER_DEFAULTS, SENDER_DEFAULTS, TcpListener, TcpSender

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hl7"


class RecordingDispatcher:
    """The channel side of a listener under test: records every message and answers.

    ``respond`` turns a message into the response text (``None``: no response). ``fail`` turns a
    message into an exception to raise instead (``None``: no failure).
    """

    def __init__(
        self,
        respond: Callable[[RawMessage], str | None] | None = None,
        fail: Callable[[RawMessage], BaseException | None] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.messages: list[RawMessage] = []
        self.respond = respond or (lambda raw: "ACK")
        self.fail = fail
        self.delay = delay
        self.active = 0
        self.max_active_per_client: dict[int, int] = {}
        self._active_per_client: dict[int, int] = {}
        self.received = trio.Event()

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        port = raw.source_map.get("remotePort", 0)
        self._active_per_client[port] = self._active_per_client.get(port, 0) + 1
        self.max_active_per_client[port] = max(
            self.max_active_per_client.get(port, 0), self._active_per_client[port]
        )
        self.active += 1
        try:
            self.messages.append(raw)
            self.received.set()
            if self.delay:
                await trio.sleep(self.delay)
            if self.fail is not None:
                error = self.fail(raw)
                if error is not None:
                    raise error
            text = self.respond(raw)
            response = None if text is None else Response(Status.SENT, text)
            return DispatchResult(len(self.messages), response)
        finally:
            self.active -= 1
            self._active_per_client[port] -= 1

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with trio.fail_after(timeout):
            while len(self.messages) < count:
                await trio.sleep(0.005)


@dataclass
class States:
    """What a connector reported through ``setup.report_state``."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, state: str, details: Mapping[str, Any]) -> None:
        self.calls.append((state, dict(details)))

    def names(self) -> list[str]:
        return [state for state, _ in self.calls]


def make_setup(
    properties: Mapping[str, Any], states: States | None = None, metadata_id: int = 0
) -> ConnectorSetup:
    return ConnectorSetup(
        channel_id="00000000-0000-0000-0000-00000000mllp",
        channel_name="mllp test",
        metadata_id=metadata_id,
        name="Source" if metadata_id == 0 else f"Destination {metadata_id}",
        properties=properties,
        report_state=states if states is not None else States(),
    )


@dataclass
class RunningListener:
    listener: TcpListener
    host: str
    port: int
    states: States
    dispatcher: Any


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def recorder_factory() -> type[RecordingDispatcher]:
    return RecordingDispatcher


@pytest.fixture
def listen(nursery: trio.Nursery) -> Callable[..., Awaitable[RunningListener]]:
    """``await listen(dispatcher, **properties)`` starts a TCP Listener on 127.0.0.1, port 0,
    in the test's nursery (cancelled when the test ends)."""

    async def start(dispatcher: Any = None, **properties: Any) -> RunningListener:
        dispatcher = dispatcher if dispatcher is not None else RecordingDispatcher()
        props = {**LISTENER_DEFAULTS, "host": "127.0.0.1", "port": 0, **properties}
        states = States()
        listener = TcpListener(make_setup(props, states))
        host, port = await nursery.start(listener.run, dispatcher)
        return RunningListener(listener, host, port, states, dispatcher)

    return start


@pytest.fixture
def make_sender() -> Callable[..., TcpSender]:
    def build(**properties: Any) -> TcpSender:
        return TcpSender(make_setup({**SENDER_DEFAULTS, **properties}, metadata_id=1))

    return build
