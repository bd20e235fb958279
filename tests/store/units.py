"""Store units the store tests commit (store tests only)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from pannier.model.status import ContentType
from pannier.sequences import BlockAllocator
from pannier.store.store import ChannelStore, Store, Unit


def received(cs: ChannelStore, text: str, when: datetime | None = None) -> Unit:
    """A new message's first transaction, as a source writes it: the message row, its source
    connector row received at ``when``, and ``text`` as its raw content."""
    unit = Unit(new_message_for=cs)

    def build(message_id: int) -> None:
        cs.add_received(unit, message_id, when)
        cs.add_content(unit, message_id, 0, ContentType.RAW, text, "HL7V2")

    unit.build = build
    return unit


async def commit_one_by_one(store: Store, count: int) -> int:
    """Run ``store`` on a fresh schema, commit ``count`` new messages of a new channel one
    at a time, close it; how many messages the database then holds."""
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        for n in range(count):
            await store.commit(received(cs, f"message {n}", store.now()))
        nursery.cancel_scope.cancel()
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(cs.tables.message)).scalar()
    await store.aclose()
    return int(stored or 0)


async def check_batch_paths(url: str, async_batches: bool, paths: list[str]) -> None:
    """``[database] async_batches = false`` keeps every batch in the writer's thread; true
    (the default) sends all but a writer's first from the event loop. ``paths`` is filled,
    batch by batch, with "loop" or "thread" by the caller's recorders."""
    store = Store(url, str(uuid.uuid4()), BlockAllocator(100), async_batches=async_batches)
    assert await commit_one_by_one(store, 6) == 6
    if async_batches:
        # The writers' first batches make their connections in their threads.
        assert paths.count("thread") <= store.writers and paths.count("loop") >= 6 - store.writers
    else:
        assert paths == ["thread"] * 6


def record_path(
    monkeypatch: pytest.MonkeyPatch,
    paths: list[str],
    module: Any,
    name: str,
    label: str,
    instead: Callable[..., Any] | None = None,
) -> None:
    """Append ``label`` to ``paths`` at each call of ``module.name`` (sync or async), which
    then runs as before, or ``instead``."""
    real = instead or getattr(module, name)
    if inspect.iscoroutinefunction(real):

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            paths.append(label)
            return await real(*args, **kwargs)

    else:

        def recorded(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            paths.append(label)
            return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)
