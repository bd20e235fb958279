"""Many messages committed together: each message's rows get its own values, whatever the store
does to write a batch in few round trips (on MariaDB/MySQL, one multi-statement text; on
PostgreSQL a pipeline)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from pannier.sequences import BlockAllocator
from pannier.store import store as store_module
from pannier.store.driver import run_multi_statement
from pannier.store.mysql_wire import run_query
from pannier.store.store import UPDATE_CONNECTOR, UPDATE_MESSAGE, ChannelStore, Store, Unit

from .units import received


def processed(cs: ChannelStore, message_id: int, n: int) -> Unit:
    """Message ``n``'s second transaction: its own status, error code and dates; every third
    one is left unprocessed."""
    unit = Unit()
    unit.add(
        UPDATE_CONNECTOR,
        cs.update_connector,
        {
            "b_message_id": message_id,
            "b_metadata_id": 0,
            "STATUS": "TEF"[n % 3],
            "ERROR_CODE": n,
            "SEND_ATTEMPTS": n % 2,
            "RESPONSE_DATE": datetime(2026, 1, 1 + n % 28, 10, n % 60, 0) if n % 2 else None,
        },
    )
    if n % 3:
        unit.add(UPDATE_MESSAGE, cs.mark_processed, {"b_message_id": message_id})
    return unit


async def test_a_batch_of_updates_gives_each_message_its_own_values(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db_url, str(uuid.uuid4()), BlockAllocator(100), pool_size=4)
    round_trips: list[list[str]] = []

    def recording(conn: Any, cursor: Any, statements: list[str]) -> None:
        round_trips.append(list(statements))
        run_multi_statement(conn, cursor, statements)

    async def recording_wire(sock: Any, sql: bytes) -> Any:  # batches from the event loop
        round_trips.append(sql.decode().split(";\n"))
        return await run_query(sock, sql)

    monkeypatch.setattr(store_module, "run_multi_statement", recording)
    monkeypatch.setattr(store_module.mysql_wire, "run_query", recording_wire)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        firsts = [received(cs, f"message {n}") for n in range(40)]
        async with trio.open_nursery() as clients:  # concurrent: the committer batches them
            for unit in firsts:
                clients.start_soon(store.commit, unit)
        ids = [unit.message_id for unit in firsts]
        async with trio.open_nursery() as clients:
            for n, message_id in enumerate(ids):
                clients.start_soon(store.commit, processed(cs, message_id, n))
        nursery.cancel_scope.cancel()
    t = cs.tables
    with store.engine.connect() as conn:
        sources = {
            row.MESSAGE_ID: row
            for row in conn.execute(
                sa.select(t.connector_message).where(t.connector_message.c.ID == 0)
            )
        }
        flags = dict(conn.execute(sa.select(t.message.c.ID, t.message.c.PROCESSED)).all())
    await store.aclose()
    for n, message_id in enumerate(ids):
        row = sources[message_id]
        assert (row.STATUS, row.ERROR_CODE, row.SEND_ATTEMPTS) == ("TEF"[n % 3], n, n % 2), n
        expected = datetime(2026, 1, 1 + n % 28, 10, n % 60, 0) if n % 2 else None
        stored = row.RESPONSE_DATE.replace(tzinfo=None) if row.RESPONSE_DATE else None
        assert stored == expected, n
        assert bool(flags[message_id]) == bool(n % 3), n
    if store.dialect in ("mysql", "mariadb"):
        # Several messages' updates travelled in one round trip, each its own statement.
        updates = [sum(s.startswith("UPDATE") for s in trip) for trip in round_trips]
        assert max(updates) > 2, updates


@pytest.mark.parametrize(
    ("url", "aware"),
    [
        ("sqlite:///unused.db", False),
        ("mysql+pymysql://u@h/db", False),
        ("postgresql+psycopg://u@h/db", True),
    ],
)
def test_timestamps_are_utc_naive_except_where_the_column_keeps_a_zone(url, aware) -> None:
    """Mirth's DATETIME columns (MariaDB, SQLite) hold naive UTC; PostgreSQL's TIMESTAMPTZ
    takes an aware one. Either way it is now, to the microsecond's precision."""
    from datetime import UTC, datetime

    store = Store(url, "server", BlockAllocator(10))  # no connection is opened
    before = datetime.now(UTC)
    now = store.now()
    after = datetime.now(UTC)
    assert (now.tzinfo is not None) is aware
    as_utc = now if aware else now.replace(tzinfo=UTC)
    assert before <= as_utc <= after
    store.engine.dispose()
