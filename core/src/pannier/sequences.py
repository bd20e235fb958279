"""Message id allocation strategies (Mirth's ``D_MSQ`` per-channel sequence).

The store owns the database side: for each channel it offers a :class:`SequenceSource` whose
``reserve(count)`` takes ``count`` ids from ``D_MSQn`` in one short transaction of its own, as
Java's ``BufferedDao.getNextMessageId`` does (locked read + increment; PostgreSQL ``nextval``).
An allocator decides how many ids to reserve at once and hands them out.

Allocators are called from the store's worker threads, so they must be thread-safe;
``next_ids_nowait`` and ``wants_prefetch`` are called on the event loop and must never block.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class SequenceSource(Protocol):
    """One channel's id sequence in the database."""

    key: str
    """Identifies the sequence (database URL + table); allocators key their caches by it."""

    def reserve(self, count: int) -> list[int]:
        """Take ``count`` ids, committed before returning, in ascending order."""
        ...


class SequenceAllocator(ABC):
    """Hands out message ids for one engine."""

    @abstractmethod
    def next_ids(self, source: SequenceSource, count: int) -> list[int]:
        """``count`` ids, unique across every engine sharing ``source``, ascending."""

    def next_ids_nowait(self, source: SequenceSource, count: int) -> list[int] | None:
        """``count`` ids if they can be had at once, without the database or waiting for a
        lock, else None (then :meth:`next_ids` is called from a worker thread).

        Called on the event loop, so it must never block. An allocator that keeps ids in
        memory answers here and spares the store a thread hop per batch; the default answers
        None."""
        return None

    def wants_prefetch(self, source: SequenceSource) -> bool:
        """Whether ids for ``source`` should be fetched ahead of need now (then the store
        calls :meth:`prefetch` from a worker thread, one call per source at a time).

        Called on the event loop after ids were handed out, so it must never block. The
        default answers False."""
        return False

    def prefetch(self, source: SequenceSource) -> None:
        """Fetch ids ahead of need (worker thread, may block): the batches that follow then
        find them in memory instead of waiting for ``reserve``. The default does nothing."""
        return None


@dataclass(frozen=True)
class SequenceAllocatorSpec:
    """An allocator a plugin provides, selected by ``[database] sequence_allocator``."""

    name: str
    factory: Callable[[Mapping[str, Any]], SequenceAllocator]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)


class SingleAllocator(SequenceAllocator):
    """Exactly Java's behaviour: one locked read of ``D_MSQ`` per id asked for."""

    def next_ids(self, source: SequenceSource, count: int) -> list[int]:
        return source.reserve(count)


class BlockAllocator(SequenceAllocator):
    """Reserves ``block_size`` ids per locked read and hands them out from memory.

    Far fewer round trips on the hot row; ids left in a block when the engine stops are never
    used (gaps are allowed: Mirth itself leaves gaps when an insert rolls back).

    The next block is reserved ahead, once fewer than half a block is left
    (:meth:`wants_prefetch`), so under steady load no batch waits for ``reserve``: the batch
    that found its block empty used to go through a worker thread, the driver and an extra
    transaction, every ``block_size`` messages.
    """

    def __init__(self, block_size: int = 100) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = block_size
        self._lock = threading.Lock()
        """Guards ``_free``; never held while the database is asked."""
        self._refill = threading.Lock()
        """One prefetch at a time (a second one would reserve a block nobody needs yet)."""
        self._free: dict[str, list[int]] = {}

    def next_ids_nowait(self, source: SequenceSource, count: int) -> list[int] | None:
        if not self._lock.acquire(blocking=False):  # a worker thread is refilling
            return None
        try:
            free = self._free.get(source.key)
            if free is None or len(free) < count:
                return None
            taken, self._free[source.key] = free[:count], free[count:]
            return taken
        finally:
            self._lock.release()

    def wants_prefetch(self, source: SequenceSource) -> bool:
        free = self._free.get(source.key)  # a read without the lock: a hint, never an id
        return free is not None and len(free) < (self.block_size + 1) // 2

    def prefetch(self, source: SequenceSource) -> None:
        if not self._refill.acquire(blocking=False):
            return  # another thread is fetching
        try:
            if not self.wants_prefetch(source):
                return
            ids = source.reserve(self.block_size)  # the lock is free meanwhile: ids flow on
            with self._lock:
                free = self._free.setdefault(source.key, [])
                free.extend(ids)
                if len(free) > len(ids) and free[-len(ids) - 1] > ids[0]:
                    free.sort()  # next_ids reserved a later block meanwhile: keep ascending
        finally:
            self._refill.release()

    def next_ids(self, source: SequenceSource, count: int) -> list[int]:
        with self._lock:
            free = self._free.setdefault(source.key, [])
            if len(free) < count:
                blocks = -(-(count - len(free)) // self.block_size)  # whole blocks, rounded up
                free.extend(source.reserve(blocks * self.block_size))
            taken, self._free[source.key] = free[:count], free[count:]
            return taken
