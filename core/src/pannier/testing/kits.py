"""The conformance kits for backends (see the package docstring)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio

from pannier.bus import BusEvent, ClusterBus
from pannier.maps import MapBackend
from pannier.sequences import SequenceAllocator


async def check_map_backend(backend: MapBackend, scope_prefix: str = "conformance") -> None:
    """Values round-trip, scopes are separate, absent keys read as None, removal and clearing
    work. Uses scopes starting with ``scope_prefix`` and clears them afterwards."""
    a, b = f"{scope_prefix}:a", f"{scope_prefix}:b"
    await backend.clear(a)
    await backend.clear(b)
    try:
        assert await backend.get(a, "missing") is None, "an absent key must read as None"
        await backend.put(a, "text", "value")
        await backend.put(a, "number", 42)
        await backend.put(b, "text", "other")
        assert await backend.get(a, "text") == "value", "a stored string must read back"
        assert await backend.get(a, "number") == 42, "a stored int must read back as an int"
        assert await backend.get(b, "text") == "other", "scopes must not share keys"
        await backend.put(a, "text", "changed")
        assert await backend.get(a, "text") == "changed", "put must replace a value"
        assert await backend.items(a) == {"text": "changed", "number": 42}, (
            "items must return the whole scope"
        )
        await backend.remove(a, "text")
        await backend.remove(a, "never-there")
        assert await backend.get(a, "text") is None, "a removed key must read as None"
        await backend.clear(a)
        assert await backend.items(a) == {}, "clear must empty the scope"
        assert await backend.items(b) == {"text": "other"}, "clear must leave other scopes"
    finally:
        await backend.clear(a)
        await backend.clear(b)


class _CountingSource:
    """An in-memory D_MSQ: reserve(n) hands out the next n ids under a lock."""

    key = "conformance-sequence"

    def __init__(self) -> None:
        self._next = 1
        self._lock = threading.Lock()
        self.reserved = 0

    def reserve(self, count: int) -> list[int]:
        with self._lock:
            first, self._next = self._next, self._next + count
            self.reserved += 1
        return list(range(first, first + count))


def check_sequence_allocator(
    factory: Callable[[], SequenceAllocator], engines: int = 3, threads: int = 4, calls: int = 200
) -> None:
    """Several allocators (one per simulated engine) used from several threads on one
    sequence never hand out an id twice, and each call's ids ascend; ``next_ids_nowait``,
    called between them as the store's event loop does, too, and it never reserves ids
    itself (it must not wait for the database), nor does ``wants_prefetch``; ``prefetch``,
    called from other threads meanwhile as the store does when ``wants_prefetch`` says so,
    changes none of that."""
    source = _CountingSource()
    allocators = [factory() for _ in range(engines)]
    seen: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    probe = factory()
    probe.next_ids(source, 1)
    reserved = source.reserved
    probe.next_ids_nowait(source, 1)
    probe.next_ids_nowait(source, 10**6)
    assert source.reserved == reserved, "next_ids_nowait reserved ids (it must not block)"
    probe.wants_prefetch(source)
    assert source.reserved == reserved, "wants_prefetch reserved ids (it must not block)"

    def work(allocator: SequenceAllocator, size: int) -> None:
        for call in range(calls):
            nowait = allocator.next_ids_nowait(source, size) if call % 2 else None
            ids = nowait if nowait is not None else allocator.next_ids(source, size)
            if call % 3 == 0 and allocator.wants_prefetch(source):
                allocator.prefetch(source)  # this thread, or another one meanwhile
            if len(ids) != size:
                errors.append(f"asked for {size} ids, got {len(ids)}")
            if ids != sorted(ids):
                errors.append(f"ids of one call must ascend, got {ids}")
            with lock:
                seen.extend(ids)

    workers = [
        threading.Thread(target=work, args=(allocator, 1 + n % 3))
        for allocator in allocators
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors[0]
    assert len(seen) == len(set(seen)), "an id was handed out twice"


async def check_cluster_bus(factory: Callable[[], ClusterBus], *, shared: bool) -> None:
    """Subscribers get events of their topic only, in order; closing a subscription does not
    break publishing; with ``shared=True`` two bus instances (two engines) see each other's
    events."""
    async with trio.open_nursery() as nursery:
        first = factory()
        await nursery.start(first.run)
        second = factory() if shared else first
        if shared:
            await nursery.start(second.run)
        deploys = second.subscribe("conformance.deploy")
        others = second.subscribe("conformance.other")
        closed = second.subscribe("conformance.deploy")
        await closed.aclose()
        with trio.fail_after(10):
            for n in range(3):
                await first.publish(BusEvent("conformance.deploy", {"n": n}, "node-a"))
            received = [await deploys.receive() for _ in range(3)]
        assert [e.payload["n"] for e in received] == [0, 1, 2], (
            "events must arrive in publish order"
        )
        assert all(e.sender == "node-a" and e.topic == "conformance.deploy" for e in received)
        with trio.move_on_after(0.2):
            unexpected = await others.receive()
            raise AssertionError(f"a subscriber got an event of another topic: {unexpected}")
        nursery.cancel_scope.cancel()
