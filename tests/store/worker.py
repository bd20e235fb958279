"""A Pannier store process for the concurrency tests (run as a script, one per process).

    python worker.py URL START_AT SERVER_ID start SHARED_CHANNEL OWN_CHANNEL
    python worker.py URL START_AT SERVER_ID ids CHANNEL COUNT BLOCK THREADS

Waits until the wall clock reaches START_AT (so that all processes hit the database at the
same moment), prepares the database in standalone mode, then either opens two channels
(``start``) or allocates COUNT message ids from CHANNEL with a block allocator of BLOCK ids
in THREADS threads (``ids``). Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import trio
from pannier.sequences import BlockAllocator
from pannier.store.store import Store


async def start(store: Store, shared: str, own: str) -> dict[str, object]:
    mode = await store.create_schema("standalone")
    shared_store = await store.open_channel(shared)
    own_store = await store.open_channel(own)
    return {
        "mode": mode,
        "shared": shared_store.local_channel_id,
        "own": own_store.local_channel_id,
    }


async def ids(store: Store, channel: str, count: int, threads: int) -> dict[str, object]:
    await store.create_schema("standalone")
    channel_store = await store.open_channel(channel)

    def take(n: int) -> list[int]:
        taken: list[int] = []
        for _ in range(n):
            taken.extend(store.allocator.next_ids(channel_store.sequence, 1))
        return taken

    def run_threads() -> list[int]:
        share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            return [i for part in pool.map(take, share) for i in part]

    return {"ids": await trio.to_thread.run_sync(run_threads)}


def main(argv: list[str]) -> None:
    url, start_at, server_id, command, *args = argv
    store = Store(url, server_id, BlockAllocator(int(args[2]) if command == "ids" else 100))
    delay = float(start_at) - time.time()
    if delay > 0:
        time.sleep(delay)

    async def run() -> dict[str, object]:
        try:
            if command == "start":
                return await start(store, args[0], args[1])
            return await ids(store, args[0], int(args[1]), int(args[3]))
        finally:
            await store.aclose()

    print(json.dumps(trio.run(run)))


if __name__ == "__main__":
    main(sys.argv[1:])
