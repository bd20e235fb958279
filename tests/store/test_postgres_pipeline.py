"""PostgreSQL batches sent from the event loop (libpq's pipeline awaited with trio): all but a
writer's first batch go that way, ``[database] async_batches = false`` keeps them in the
writer's thread, and a killed connection or a failing unit loses nothing else."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa
import trio
from pannier.sequences import BlockAllocator
from pannier.store import store as store_module
from pannier.store.store import Store, Unit

from .units import check_batch_paths, received, record_path


def _record_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each batch goes: "loop" (the pipeline awaited on the event loop) or
    "thread" (the same pipeline in the writer's thread)."""
    paths: list[str] = []
    record_path(monkeypatch, paths, store_module, "run_libpq_pipeline_async", "loop")
    record_path(monkeypatch, paths, store_module, "run_libpq_pipeline", "thread")
    return paths


@pytest.mark.parametrize("async_batches", [True, False])
async def test_batches_go_from_the_event_loop_unless_configured_not_to(
    postgres_url: str, async_batches: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await check_batch_paths(postgres_url, async_batches, _record_paths(monkeypatch))


async def test_a_killed_connection_and_a_failing_unit_lose_nothing_else(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The writers' connections are ended by the server between batches and one unit of a
    batch fails: those batches go through the writer's thread (a fresh connection, one unit
    at a time), every other message is stored once, and when the store closes no connection
    of it is left on the server."""
    database = sa.engine.make_url(postgres_url).database
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    def terminate() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )

    def connections() -> int:
        with admin.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).scalar_one()
            )

    store = Store(postgres_url, str(uuid.uuid4()), BlockAllocator(100), pool_size=4)
    sent: list[Unit] = []
    failures: list[BaseException] = []

    async def commit(unit: Unit) -> None:
        try:
            await store.commit(unit)
        except Exception as exc:
            failures.append(exc)

    with caplog.at_level(logging.DEBUG, logger="pannier.store"):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.create_schema()
            cs = await store.open_channel(str(uuid.uuid4()))
            for n in range(5):  # the writers connect in their threads, then the loop takes over
                unit = received(cs, f"before {n}", store.now())
                await store.commit(unit)
                sent.append(unit)
            await trio.sleep(0.2)  # ids fetched ahead: the next batches stay on the loop
            terminate()
            async with trio.open_nursery() as clients:
                for n in range(20):
                    unit = received(cs, f"after {n}", store.now())
                    sent.append(unit)
                    clients.start_soon(store.commit, unit)
            bad = Unit()  # a content row of a message that does not exist: the FK refuses it
            cs.add_content(bad, 10**9, 0, 1, "orphan", None)
            good = [received(cs, f"beside {n}", store.now()) for n in range(3)]
            async with trio.open_nursery() as clients:
                for unit in [bad, *good]:
                    clients.start_soon(commit, unit)
            sent += good
            nursery.cancel_scope.cancel()
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(cs.tables.message.c.ID)).scalars().all()
    await store.aclose()
    try:
        assert len(failures) == 1 and "foreign key" in str(failures[0]).lower(), failures
        fallbacks = [r.message for r in caplog.records if "from the event loop failed" in r.message]
        assert fallbacks, "no batch from the event loop met the ended connection"
        assert sorted(stored) == sorted(unit.message_id for unit in sent)
        assert connections() == 0
    finally:
        admin.dispose()
