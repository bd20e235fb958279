"""Message ids are fetched ahead of need: with the ``block`` allocator no batch but the very
first waits for ``D_MSQ`` (a locked read, an update and a commit of its own), and a failed
fetch ahead costs nothing but a warning."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import trio
from pannier.sequences import BlockAllocator, SequenceAllocator, SequenceSource
from pannier.store.store import ChannelStore, Store

from .units import received

Reserve = Callable[[int], list[int]]


class Recording(BlockAllocator):
    """The ``block`` allocator, counting the fetches made ahead of need."""

    def __init__(self, block_size: int) -> None:
        super().__init__(block_size)
        self.prefetched = 0

    def prefetch(self, source: SequenceSource) -> None:
        super().prefetch(source)
        self.prefetched += 1


async def _commit_one_by_one(
    db_url: str,
    allocator: SequenceAllocator,
    count: int,
    reserve_through: Callable[[Reserve], Reserve],
) -> tuple[Store, ChannelStore, list[int]]:
    """Commit ``count`` new messages one after another, at a steady pace, with the channel's
    ``reserve`` replaced by ``reserve_through(reserve)``; the store and channel (closed)
    and the messages' ids."""
    store = Store(db_url, str(uuid.uuid4()), allocator, pool_size=4)
    ids = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        cs.sequence.reserve = reserve_through(cs.sequence.reserve)  # type: ignore[method-assign]
        for n in range(count):
            unit = received(cs, f"message {n}")
            await store.commit(unit)
            assert unit.message_id is not None
            ids.append(unit.message_id)
            await trio.sleep(0.02)  # time for a fetch ahead to come back
        nursery.cancel_scope.cancel()
    return store, cs, ids


async def test_after_the_first_block_every_reservation_is_made_ahead_of_need(
    db_url: str,
) -> None:
    allocator = Recording(block_size=10)
    reservations = 0

    def counted(reserve: Reserve) -> Reserve:
        def counting(count: int) -> list[int]:
            nonlocal reservations
            reservations += 1
            return reserve(count)

        return counting

    store, cs, ids = await _commit_one_by_one(db_url, allocator, 45, counted)
    t = cs.tables
    with store.engine.connect() as conn:
        stored = sorted(conn.execute(sa.select(t.message.c.ID)).scalars())
        next_free = (
            None
            if store.dialect == "postgresql"  # a sequence there, read by nextval
            else conn.execute(sa.select(t.sequence.c.ID)).scalar_one()
        )
    await store.aclose()
    assert ids == sorted(ids) and len(set(ids)) == 45, ids
    assert stored == ids
    # One block for the first batch; each later one fetched while half a block was left.
    assert allocator.prefetched >= 4, allocator.prefetched
    assert reservations == 1 + allocator.prefetched, (reservations, allocator.prefetched)
    if next_free is not None:
        assert next_free == 1 + 10 * reservations


async def test_a_failed_fetch_ahead_is_a_warning_and_the_batches_fetch_their_ids(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    failures = 0

    def failing_ahead(reserve: Reserve) -> Reserve:
        def failing(count: int) -> list[int]:
            nonlocal failures
            if any(frame.name == "prefetch" for frame in traceback.extract_stack()):
                failures += 1
                raise sa.exc.OperationalError("SELECT ... FOR UPDATE", None, Exception("gone"))
            return reserve(count)

        return failing

    with caplog.at_level(logging.WARNING, logger="pannier.store"):
        store, _cs, ids = await _commit_one_by_one(db_url, BlockAllocator(4), 12, failing_ahead)
    await store.aclose()
    assert failures >= 1
    assert ids == list(range(ids[0], ids[0] + 12)), ids
    assert any("fetching message ids ahead failed" in r.getMessage() for r in caplog.records)
