"""MariaDB batches sent from the event loop (``pannier.store.mysql_wire``): the protocol's
packets as the server writes them, a real server answering both drivers' connections, and the
store falling back to the driver, losing nothing, when the wire cannot carry a batch."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from pannier.sequences import BlockAllocator
from pannier.store.mysql_wire import (
    AnswerReader,
    NotForWire,
    WireError,
    WireSocket,
    command_packets,
    run_query,
)
from pannier.store.store import Store, Unit

from .units import check_batch_paths, commit_one_by_one, received, record_path

DRIVERS = [
    pytest.param("pymysql", id="pymysql"),
    pytest.param("mysqldb", id="mysqlclient"),
]


def ok_packet(sequence: int, affected: int, more: bool) -> bytes:
    status = 0x0002 | (0x0008 if more else 0)  # autocommit bit, "more results"
    payload = bytes([0x00, affected, 0]) + status.to_bytes(2, "little") + b"\x00\x00"
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


def test_a_query_longer_than_one_packet_is_split_as_the_protocol_says() -> None:
    """Payloads of 16 MiB - 1 or more go out as full packets plus a shorter last one (an empty
    one when the length is an exact multiple), numbered from 0."""
    sql = b"x" * (0xFFFFFF + 10)
    data = command_packets(sql)
    first, second = data[: 4 + 0xFFFFFF], data[4 + 0xFFFFFF :]
    assert first[:4] == b"\xff\xff\xff\x00" and first[4] == 0x03  # COM_QUERY
    assert second[:4] == (11).to_bytes(3, "little") + b"\x01" and len(second) == 4 + 11
    exact = command_packets(b"y" * (0xFFFFFF - 1))  # command byte + text = one full packet
    assert exact[-4:] == b"\x00\x00\x00\x01"


def test_answers_are_read_to_the_last_ok_even_a_byte_at_a_time() -> None:
    answers = ok_packet(1, 3, True) + ok_packet(2, 1, True) + ok_packet(3, 0, False)
    reader = AnswerReader()
    done = [reader.feed(answers[i : i + 1]) for i in range(len(answers))]
    assert done[-1] is True and not any(done[:-1])
    assert reader.affected == [3, 1, 0]


def test_an_error_packet_names_the_error_and_anything_else_is_refused() -> None:
    payload = (
        b"\xff" + (1062).to_bytes(2, "little") + b"#23000Duplicate entry '1' for key 'PRIMARY'"
    )
    reader = AnswerReader()
    reader.feed(ok_packet(1, 1, True))
    with pytest.raises(WireError) as caught:
        reader.feed(len(payload).to_bytes(3, "little") + b"\x02" + payload)
    assert (caught.value.errno, caught.value.sqlstate) == (1062, "23000")
    assert "Duplicate entry" in caught.value.message
    result_set = b"\x01\x00\x00\x01\x01"  # a column count: a SELECT's answer
    with pytest.raises(NotForWire):
        AnswerReader().feed(result_set)


def _driver_url(mysql_url: str, driver: str) -> str:
    if driver == "mysqldb":
        pytest.importorskip(
            "MySQLdb", reason="mysqlclient (pip install 'pannier[mysqlclient]') not installed"
        )
    return mysql_url.replace("mysql+pymysql://", f"mysql+{driver}://")


@pytest.mark.parametrize("driver", DRIVERS)
async def test_statements_and_commit_run_on_the_drivers_socket(mysql_url: str, driver: str) -> None:
    """On a connection made by either driver, one query carries the statements and the
    COMMIT; the rows are then visible to another connection, and the driver goes on using
    the same connection afterwards. An error stops the rest, and closing the connection
    rolls back what ran before it."""
    url = _driver_url(mysql_url, driver)
    store = Store(url, str(uuid.uuid4()), BlockAllocator(10))  # its engine: multi-statements
    engine = store.engine
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (ID INT PRIMARY KEY, NAME TEXT)")
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        wire = WireSocket.of(dbapi)
        try:
            result = await run_query(
                wire.sock,
                "INSERT INTO t VALUES (1, 'one');\nINSERT INTO t VALUES (2, 'two'), (3, 'é');"
                "\nCOMMIT".encode(),
            )
            assert result.affected == [1, 2, 0]
            with engine.connect() as other:
                assert other.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 3
            cursor = dbapi.cursor()  # the driver's own protocol state is intact
            cursor.execute("SELECT NAME FROM t WHERE ID = 3")
            assert cursor.fetchall()[0][0] == "é"
            cursor.close()
            dbapi.commit()
            with pytest.raises(WireError) as caught:
                await run_query(
                    wire.sock, b"INSERT INTO t VALUES (4, 'four');\nINSERT INTO t VALUES (1, 'x')"
                )
            assert caught.value.errno == 1062
        finally:
            wire.close()
        conn.invalidate()  # as the store does after a failed batch
    with engine.connect() as other:
        assert other.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 3  # no row 4
    engine.dispose()


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_connection_in_autocommit_is_not_used(mysql_url: str, driver: str) -> None:
    """Autocommit would make each statement its own transaction: such a connection stays
    with the driver."""
    engine = sa.create_engine(_driver_url(mysql_url, driver), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn, pytest.raises(NotForWire, match="autocommit"):
        WireSocket.of(conn.connection.dbapi_connection)
    engine.dispose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_killed_connection_and_a_failing_unit_lose_nothing_else(
    mysql_url: str, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's writer connection is killed between batches and one unit of a batch
    fails: the batch goes through the driver (fresh connection, one unit at a time), every
    other message is stored once, and when the store closes no connection of it is left on
    the server."""
    url = _driver_url(mysql_url, driver)
    database = sa.engine.make_url(url).database
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    def connections() -> list[int]:
        with admin.connect() as conn:
            return [
                pid
                for (pid,) in conn.exec_driver_sql(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                    "ID <> CONNECTION_ID()",
                    (database,),
                )
            ]

    store = Store(url, str(uuid.uuid4()), BlockAllocator(100), pool_size=4)
    sent: list[Unit] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        for n in range(5):  # the writers connect, through the driver, then on the wire
            unit = received(cs, f"before {n}", store.now())
            await store.commit(unit)
            sent.append(unit)
        assert store.async_batches
        for pid in connections():
            with admin.connect() as conn:
                conn.exec_driver_sql(f"KILL {int(pid)}")
        async with trio.open_nursery() as clients:
            for n in range(20):
                unit = received(cs, f"after {n}", store.now())
                sent.append(unit)
                clients.start_soon(store.commit, unit)
        bad = Unit()  # a content row of a message that does not exist: the FK refuses it
        cs.add_content(bad, 10**9, 0, 1, "orphan", None)
        good = [received(cs, f"beside {n}", store.now()) for n in range(3)]
        failures: list[BaseException] = []

        async def commit(unit: Unit) -> None:
            try:
                await store.commit(unit)
            except Exception as exc:
                failures.append(exc)

        async with trio.open_nursery() as clients:
            for unit in [bad, *good]:
                clients.start_soon(commit, unit)
        sent += good
        nursery.cancel_scope.cancel()
    assert len(failures) == 1 and "foreign key" in str(failures[0]).lower()
    fallbacks = [r.message for r in caplog.records if "from the event loop failed" in r.message]
    assert any("ConnectionLost" in text for text in fallbacks), fallbacks
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(cs.tables.message.c.ID)).scalars().all()
    await store.aclose()
    assert sorted(stored) == sorted(unit.message_id for unit in sent)
    assert connections() == []
    admin.dispose()


def _record_paths(monkeypatch: pytest.MonkeyPatch, wire: Any = None) -> list[str]:
    """Which way each batch the store writes goes: "loop" (``run_query``, or ``wire`` in its
    place) or "thread" (the driver's multi-statement text in a worker thread)."""
    from pannier.store import mysql_wire
    from pannier.store import store as store_module

    paths: list[str] = []
    record_path(monkeypatch, paths, mysql_wire, "run_query", "loop", instead=wire)
    record_path(monkeypatch, paths, store_module, "run_multi_statement", "thread")
    return paths


@pytest.mark.parametrize("async_batches", [True, False])
async def test_database_async_batches_chooses_the_path(
    mysql_url: str, async_batches: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[database] async_batches = false`` keeps every batch on the driver in a worker
    thread; true (the default) sends all but a writer's first from the event loop."""
    await check_batch_paths(mysql_url, async_batches, _record_paths(monkeypatch))


async def test_answers_the_wire_does_not_know_send_the_store_back_to_the_driver(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the socket carry something other than the server's plain answers (a proxy
    ending TLS the server does not report, say), the batch is written through the driver,
    and so is every batch after it: no message is lost and the log says why."""

    async def garbled(sock: Any, sql: bytes) -> Any:
        raise NotForWire("unexpected answer packet 0x16")

    paths = _record_paths(monkeypatch, wire=garbled)
    store = Store(mysql_url, str(uuid.uuid4()), BlockAllocator(100))
    assert await commit_one_by_one(store, 6) == 6
    assert paths.count("loop") == 1 and paths.count("thread") == 6  # tried once, then never
    assert any("from now on" in r.message and "0x16" in r.message for r in caplog.records)
