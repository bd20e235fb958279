"""Fixtures for kernel tests: an in-process engine with test plugins registered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from pannier.engine import Engine
from pannier.testing.engine import engine_config

StartEngine = Callable[..., Awaitable[Engine]]


@pytest.fixture
def start_engine(nursery: trio.Nursery, tmp_path: Path) -> StartEngine:
    """Start an engine on a fresh SQLite database with the given channel files (TOML text)."""

    async def start(
        channels: Sequence[str],
        *,
        plugins: Sequence[object] = (),
        config: str = "",
        within: trio.Nursery | None = None,
    ) -> Engine:
        """``within``: run the engine in that nursery (cancel it to kill the engine)."""
        engine = Engine(engine_config(tmp_path, channels, config), extra_plugins=plugins)
        await (within or nursery).start(engine.run)
        return engine

    return start


def rows(engine: Engine, sql: str) -> list[tuple]:
    """Run a query against the engine's database (tests only: blocking is fine here)."""
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]
