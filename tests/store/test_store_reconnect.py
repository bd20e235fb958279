"""The write path survives what a database does under load: connections killed, a database
that refuses connections for a while, and lock-wait timeouts. Accepted work waits and then
completes instead of failing."""

from __future__ import annotations

import threading
import time
import uuid

import sqlalchemy as sa
import trio
from pannier.sequences import SingleAllocator
from pannier.store.store import ChannelStore, Store, Unit


def message_unit(cs: ChannelStore, server_id: str) -> Unit:
    unit = Unit(new_message_for=cs)

    def build(mid: int) -> None:
        cs.add_received(unit, mid, None)

    unit.build = build
    return unit


async def run_with_store(url: str, during) -> list[int]:
    server_id = str(uuid.uuid4())
    store = Store(url, server_id, SingleAllocator(), pool_size=4, retry_seconds=30)
    ids = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        for _ in range(3):  # warm the pool
            unit = message_unit(cs, server_id)
            await store.commit(unit)
            ids.append(unit.message_id)
        await trio.to_thread.run_sync(during, cs)
        for _ in range(3):
            unit = message_unit(cs, server_id)
            await store.commit(unit)
            ids.append(unit.message_id)
        nursery.cancel_scope.cancel()
    with store.engine.connect() as conn:
        stored = sorted(conn.execute(sa.select(cs.tables.message.c.ID)).scalars())
    await store.aclose()
    assert stored == sorted(ids)
    return ids


async def test_postgres_refusing_connections_for_a_while_is_waited_out(postgres_url) -> None:
    database = sa.engine.make_url(postgres_url).database
    admin = sa.create_engine(
        sa.engine.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )

    def outage(_cs: ChannelStore) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )

        def recover() -> None:
            time.sleep(1.5)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        threading.Thread(target=recover).start()

    try:
        ids = await run_with_store(postgres_url, outage)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.dispose()
    assert len(set(ids)) == 6


async def test_mysql_killed_connections_and_lock_wait_timeouts(mysql_url) -> None:
    database = sa.engine.make_url(mysql_url).database
    admin = sa.create_engine(mysql_url, isolation_level="AUTOCOMMIT")

    def trouble(cs: ChannelStore) -> None:
        with admin.connect() as conn:
            for (pid,) in conn.exec_driver_sql(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                "ID <> CONNECTION_ID()",
                (database,),
            ).all():
                conn.exec_driver_sql(f"KILL {int(pid)}")
        # Hold the sequence row lock longer than the server lets others wait for it.
        holder = sa.create_engine(mysql_url)
        started = threading.Event()

        def hold() -> None:
            with holder.begin() as conn:
                conn.exec_driver_sql(f"SELECT ID FROM {cs.tables.sequence.name} FOR UPDATE")
                started.set()
                time.sleep(2.5)
            holder.dispose()

        threading.Thread(target=hold).start()
        started.wait()
        with admin.connect() as conn:
            conn.exec_driver_sql("SET GLOBAL innodb_lock_wait_timeout = 1")

    try:
        ids = await run_with_store(mysql_url, trouble)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("SET GLOBAL innodb_lock_wait_timeout = 50")
        admin.dispose()
    assert len(set(ids)) == 6
