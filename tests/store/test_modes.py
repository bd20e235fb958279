"""Database modes on SQLite, MariaDB and PostgreSQL: standalone creates and seeds once, takeover
accepts only a Mirth 4.5.x/4.6.0 database and creates nothing but missing channel tables, auto
picks one of the two; Pannier works on a database built by Mirth's own DDL."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
import sqlalchemy as sa
import trio
from pannier.sequences import BlockAllocator
from pannier.store import setup
from pannier.store.schema import MIRTH_ADMIN_PASSWORD_HASH
from pannier.store.setup import SchemaError, accepted_version
from pannier.store.store import (
    INSERT_CONTENT,
    ChannelStore,
    Store,
    Unit,
)

from .conftest import run_mirth_ddl

MIRTH_CHANNEL = "7d0f7a8e-1111-4222-8333-944455556666"
NEW_CHANNEL = "7d0f7a8e-1111-4222-8333-944455557777"


def kind_of(url: str) -> str:
    backend = sa.engine.make_url(url).get_backend_name()
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)


def run(url: str, *statements: str) -> list[list[tuple]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            return [
                [tuple(row) for row in result] if result.returns_rows else []
                for result in (conn.execute(sa.text(s)) for s in statements)
            ]
    finally:
        engine.dispose()


def tables_and_sequences(url: str) -> tuple[set[str], set[str]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            catalog = setup.read_catalog(conn)
            return set(catalog.tables), set(catalog.sequences)
    finally:
        engine.dispose()


def new_store(url: str) -> Store:
    return Store(url, "node-a", BlockAllocator(10))


async def store_message(store: Store, channel: ChannelStore, text: str) -> int:
    """Write a received message the way the pipeline does: D_M, source D_MM, RAW content."""
    unit = Unit(new_message_for=channel)
    now = store.now()

    def build(message_id: int) -> None:
        channel.add_received(unit, message_id, now)
        unit.add(
            INSERT_CONTENT,
            channel.insert_content,
            {
                "METADATA_ID": 0,
                "MESSAGE_ID": message_id,
                "CONTENT_TYPE": 1,
                "CONTENT": text,
                "IS_ENCRYPTED": False,
                "DATA_TYPE": "HL7V2",
            },
        )
        channel.add_custom_metadata(unit, message_id, 0, {"SOURCE": "LAB", "TYPE": "ORU"})

    unit.build = build
    await store.commit(unit)
    assert unit.message_id is not None
    return unit.message_id


def test_accepted_versions() -> None:
    for version in ("4.5.0", "4.5.2", "4.5.10", "4.6.0", " 4.5.2 "):
        assert accepted_version(version), version
    for version in ("4.4.2", "4.6.1", "4.7.0", "3.12.0", "4.5", "", None):
        assert not accepted_version(version), version


async def test_standalone_creates_and_seeds_once(db_url: str) -> None:
    store = new_store(db_url)
    try:
        assert await store.create_schema("standalone") == "standalone"
        assert await store.create_schema("standalone") == "standalone"
        assert await store.create_schema() == "standalone"
    finally:
        await store.aclose()
    (info, people, passwords, config) = run(
        db_url,
        "SELECT VERSION FROM SCHEMA_INFO",
        "SELECT ID, USERNAME FROM PERSON",
        "SELECT PERSON_ID, PASSWORD, PASSWORD_DATE FROM PERSON_PASSWORD",
        "SELECT CATEGORY, NAME, VALUE FROM CONFIGURATION ORDER BY NAME",
    )
    assert info == [("4.5.2",)]
    assert people == [(1, "admin")]
    assert passwords == [(1, MIRTH_ADMIN_PASSWORD_HASH, None)]
    assert config == [
        ("core", "server.queuebuffersize", "1000"),
        ("core", "server.resetglobalvariables", "1"),
        ("core", "smtp.auth", "0"),
        ("core", "smtp.secure", "0"),
        ("core", "smtp.timeout", "5000"),
        ("core", "stats.enabled", "1"),
    ]


def test_the_admin_hash_is_mirths_pbkdf2_of_admin() -> None:
    """PBKDF2WithHmacSHA256, 600,000 iterations, base64(8-byte salt + 32-byte key)."""
    raw = base64.b64decode(MIRTH_ADMIN_PASSWORD_HASH)
    salt, key = raw[:8], raw[8:]
    assert len(key) == 32
    assert hashlib.pbkdf2_hmac("sha256", b"admin", salt, 600_000, 32) == key


async def test_takeover_refuses_a_database_without_schema_info(db_url: str) -> None:
    store = new_store(db_url)
    try:
        with pytest.raises(SchemaError, match=r"no SCHEMA_INFO table.*no tables at all"):
            await store.create_schema("takeover")
        run(db_url, "CREATE TABLE SOMETHING_ELSE (ID INTEGER)")
        with pytest.raises(SchemaError, match=r"found 1 table\(s\): SOMETHING_ELSE"):
            await store.create_schema("takeover")
    finally:
        await store.aclose()
    assert tables_and_sequences(db_url) == ({"SOMETHING_ELSE"}, set()), "nothing created"


@pytest.mark.parametrize("version", ["3.12.0", "4.7.0", None])
async def test_takeover_refuses_other_versions(db_url: str, version: str | None) -> None:
    run_mirth_ddl(db_url, kind_of(db_url))
    if version is None:
        run(db_url, "DELETE FROM SCHEMA_INFO")
    else:
        run(db_url, f"UPDATE SCHEMA_INFO SET VERSION = '{version}'")
    before = tables_and_sequences(db_url)
    store = new_store(db_url)
    try:
        expected = "no row" if version is None else repr(version)
        with pytest.raises(
            SchemaError,
            match=rf"SCHEMA_INFO\.VERSION .* is {re.escape(expected)}; "
            r"Pannier takes over Mirth 4\.5\.x and 4\.6\.0",
        ):
            await store.create_schema("takeover")
    finally:
        await store.aclose()
    assert tables_and_sequences(db_url) == before


async def test_auto_is_standalone_on_an_empty_database_and_takeover_on_mirths(
    db_url: str, tmp_path
) -> None:
    store = new_store(db_url)
    try:
        assert await store.create_schema("auto") == "standalone"
        assert run(db_url, "SELECT VERSION FROM SCHEMA_INFO") == [[("4.5.2",)]]
        assert await store.create_schema("auto") == "takeover"
        run(db_url, "UPDATE SCHEMA_INFO SET VERSION = '2.2.1'")
        with pytest.raises(SchemaError, match=r"'2\.2\.1'"):
            await store.create_schema("auto")
    finally:
        await store.aclose()


async def test_takeover_of_a_database_built_by_mirths_ddl(db_url: str, nursery) -> None:
    """Pannier on a database created by Mirth's own DDL, with one channel Mirth has used:
    nothing core is created, the channel's tables are found, its id sequence is continued,
    custom metadata columns are added as Mirth adds them, and rows are written through the
    Store API; a new channel gets the next local id and all its tables."""
    kind = kind_of(db_url)
    run_mirth_ddl(db_url, kind, {1: MIRTH_CHANNEL})
    # Mirth has handed out ids 1..5 of channel 1; STARTUP_LOCK is gone, as in real 4.5.2 dumps.
    run(
        db_url,
        "SELECT setval('d_msq1', 5)" if kind == "postgres" else "UPDATE D_MSQ1 SET ID = 6",
        "DROP TABLE STARTUP_LOCK",
    )
    before = tables_and_sequences(db_url)

    store = new_store(db_url)
    try:
        assert await store.create_schema("takeover") == "takeover"
        assert tables_and_sequences(db_url) == before, "takeover creates no core table"
        channel = await store.open_channel(MIRTH_CHANNEL)
        assert channel.local_channel_id == 1
        assert tables_and_sequences(db_url) == before, "the channel's tables were found"

        await store.add_metadata_columns(channel, [("SOURCE", "STRING"), ("TYPE", "STRING")])
        channel.set_metadata_columns([("SOURCE", "STRING"), ("TYPE", "STRING")])
        await nursery.start(store.run)
        first = await store_message(store, channel, "MSH|^~\\&|one")
        second = await store_message(store, channel, "MSH|^~\\&|two")
        assert (first, second) == (6, 7), "ids continue Mirth's D_MSQ1"

        other = await store.open_channel(NEW_CHANNEL)
        assert other.local_channel_id == 2
        tables, sequences = tables_and_sequences(db_url)
        expected = {"D_M2", "D_MM2", "D_MC2", "D_MCM2", "D_MA2", "D_MS2"}
        if kind == "postgres":
            assert sequences - before[1] == {"D_MSQ2"}
        else:
            expected.add("D_MSQ2")
        assert tables - before[0] == expected
        assert await store_message(store, other, "MSH|^~\\&|three") == 1
    finally:
        nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await store.aclose()

    (messages, connectors, content, metadata, channels) = run(
        db_url,
        "SELECT ID, SERVER_ID, PROCESSED FROM D_M1 ORDER BY ID",
        "SELECT MESSAGE_ID, ID, STATUS, CONNECTOR_NAME FROM D_MM1 ORDER BY MESSAGE_ID",
        "SELECT MESSAGE_ID, CONTENT_TYPE, CONTENT FROM D_MC1 ORDER BY MESSAGE_ID",
        'SELECT MESSAGE_ID, METADATA_ID, "SOURCE", "TYPE" FROM D_MCM1 ORDER BY MESSAGE_ID'
        if kind == "postgres"
        else "SELECT MESSAGE_ID, METADATA_ID, SOURCE, TYPE FROM D_MCM1 ORDER BY MESSAGE_ID",
        "SELECT LOCAL_CHANNEL_ID, CHANNEL_ID FROM D_CHANNELS ORDER BY 1",
    )
    assert [(m[0], m[1], bool(m[2])) for m in messages] == [
        (6, "node-a", False),
        (7, "node-a", False),
    ]
    assert connectors == [(6, 0, "R", "Source"), (7, 0, "R", "Source")]
    assert content == [(6, 1, "MSH|^~\\&|one"), (7, 1, "MSH|^~\\&|two")]
    assert metadata == [(6, 0, "LAB", "ORU"), (7, 0, "LAB", "ORU")]
    assert channels == [(1, MIRTH_CHANNEL), (2, NEW_CHANNEL)]
    if kind == "postgres":  # Mirth quotes custom metadata columns: they keep their case
        (columns,) = run(
            db_url,
            "SELECT column_name FROM information_schema.columns WHERE "
            "table_name = 'd_mcm1' ORDER BY ordinal_position",
        )
        assert columns == [("metadata_id",), ("message_id",), ("SOURCE",), ("TYPE",)]


async def test_missing_channel_tables_are_recreated_and_ids_continue(db_url: str) -> None:
    """As Mirth's checkAndCreateChannelTables, but a recreated D_MSQ starts after D_M's ids."""
    kind = kind_of(db_url)
    run_mirth_ddl(db_url, kind, {1: MIRTH_CHANNEL})
    run(
        db_url,
        *(
            f"INSERT INTO D_M1 (ID, SERVER_ID, PROCESSED) VALUES ({i}, 'java', TRUE)"
            for i in (1, 2, 3)
        ),
        "DROP TABLE D_MS1",
        "DROP SEQUENCE D_MSQ1" if kind == "postgres" else "DROP TABLE D_MSQ1",
    )
    store = new_store(db_url)
    try:
        await store.create_schema("takeover")
        channel = await store.open_channel(MIRTH_CHANNEL)
        tables, sequences = tables_and_sequences(db_url)
        assert "D_MS1" in tables
        assert "D_MSQ1" in (sequences if kind == "postgres" else tables)
        assert channel.sequence.reserve(2) == [4, 5]
    finally:
        await store.aclose()


async def test_takeover_creates_d_channels_when_mirth_never_started(db_url: str) -> None:
    """A database with only mysql-database.sql run has no D_CHANNELS; Donkey would create it
    when Mirth starts, and so does Pannier (and nothing else)."""
    kind = kind_of(db_url)
    run_mirth_ddl(db_url, kind)
    run(db_url, "DROP TABLE D_CHANNELS")
    before, _ = tables_and_sequences(db_url)
    store = new_store(db_url)
    try:
        await store.create_schema("takeover")
        after, _ = tables_and_sequences(db_url)
        assert after - before == {"D_CHANNELS"}
        assert (await store.open_channel(NEW_CHANNEL)).local_channel_id == 1
    finally:
        await store.aclose()


async def test_standalone_on_mirths_database_adds_nothing_but_missing_tables(db_url) -> None:
    run_mirth_ddl(db_url, kind_of(db_url))
    run(db_url, "DROP TABLE STARTUP_LOCK")
    store = new_store(db_url)
    try:
        await store.create_schema("standalone")
    finally:
        await store.aclose()
    assert "STARTUP_LOCK" in tables_and_sequences(db_url)[0]
    assert run(
        db_url,
        "SELECT COUNT(*) FROM PERSON",
        "SELECT COUNT(*) FROM SCHEMA_INFO",
        "SELECT COUNT(*) FROM CONFIGURATION",
    ) == [[(1,)], [(1,)], [(6,)]]
