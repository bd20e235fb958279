"""Fixtures for the database connectors' tests: fresh databases on real servers, a recording
dispatcher, and connector setups.

The real-database fixtures (``mysql_url``, ``postgres_url``, ``db_url``) come from
:mod:`pannier.testing.databases`, the pytest plugin installed with pannier-core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from pannier import ConnectorSetup, DispatchResult, RawMessage, Response, Status


class RecordingDispatcher:
    """Records every message; ``fail(raw)`` may return an exception to raise instead."""

    def __init__(self, fail: Callable[[RawMessage], BaseException | None] | None = None) -> None:
        self.messages: list[RawMessage] = []
        self.fail = fail

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        await trio.sleep(0)
        if self.fail is not None:
            error = self.fail(raw)
            if error is not None:
                raise error
        self.messages.append(raw)
        return DispatchResult(len(self.messages), Response(Status.SENT, "ok"))

    @property
    def contents(self) -> list[str]:
        return [str(m.content) for m in self.messages]


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def recording_dispatcher() -> type[RecordingDispatcher]:
    return RecordingDispatcher


MakeSetup = Callable[..., ConnectorSetup]


@pytest.fixture
def make_setup(tmp_path: Path) -> MakeSetup:
    """``make_setup(defaults, should_poll=..., states=[...], **properties)``."""

    def make(
        defaults: dict[str, Any],
        *,
        should_poll: Callable[[], bool] = lambda: True,
        states: list[str] | None = None,
        **properties: Any,
    ) -> ConnectorSetup:
        sink = states if states is not None else []
        return ConnectorSetup(
            channel_id="c0ffee00-0000-0000-0000-000000000001",
            channel_name="database test",
            metadata_id=0,
            name="Source",
            properties={**defaults, **properties},
            report_state=lambda state, details: sink.append(state),
            base_directory=str(tmp_path),
            should_poll=should_poll,
        )

    return make


@pytest.fixture
def sql() -> Callable[..., list[tuple[Any, ...]]]:
    """``sql(url, statement, params=None)``: run one statement (committed); rows if any."""

    def run(url: str, statement: str, params: dict[str, Any] | None = None) -> list[tuple]:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), params or {})
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    return run
