"""The schema Pannier creates is the one Mirth's own DDL creates, catalog entry for catalog entry.

One database is prepared by Pannier (standalone mode, two channels opened); another, on the same
server, by running Mirth's DDL (``tests/fixtures/mirth-ddl``, transcribed from mirth-compat.md
§1.2 to §1.4) with the same two channels. Every table, column (order, type, nullability,
default), index, constraint, foreign key (with its ON DELETE rule) and sequence must match, and
so must the seed rows.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pannier.sequences import BlockAllocator
from pannier.store.store import Store

from .catalog import differences, mysql_catalog, postgres_catalog, seed_rows
from .conftest import run_mirth_ddl

CHANNELS = {1: "0b5e2a57-5a59-4d7e-8d1c-3b7a1c0e0001", 2: "0b5e2a57-5a59-4d7e-8d1c-3b7a1c0e0002"}


async def pannier_schema(url: str) -> None:
    store = Store(url, "exactness", BlockAllocator())
    try:
        assert await store.create_schema("standalone") == "standalone"
        for local_id, channel_id in CHANNELS.items():
            channel = await store.open_channel(channel_id)
            assert channel.local_channel_id == local_id
    finally:
        await store.aclose()


def assert_same(ours: dict, theirs: dict) -> None:
    problems = differences(ours, theirs)
    assert not problems, "Pannier's schema differs from Mirth's DDL:\n" + "\n".join(problems)


@pytest.mark.mysql
async def test_mariadb_schema_is_mirths(make_mysql_database) -> None:
    pannier_url, mirth_url = make_mysql_database(), make_mysql_database()
    await pannier_schema(pannier_url)
    run_mirth_ddl(mirth_url, "mysql", CHANNELS)
    ours, theirs = mysql_catalog(pannier_url), mysql_catalog(mirth_url)
    assert len(theirs["tables"]) == 15 + 7 * len(CHANNELS)
    assert {row[0] for row in ours["tables"]} >= {"D_M1", "D_MSQ2", "SCHEMA_INFO"}, (
        "MySQL table names are upper case, as Mirth writes them"
    )
    assert_same(ours, theirs)
    assert seed_rows(pannier_url) == seed_rows(mirth_url)


@pytest.mark.postgres
async def test_postgres_schema_is_mirths(make_postgres_database) -> None:
    pannier_url, mirth_url = make_postgres_database(), make_postgres_database()
    await pannier_schema(pannier_url)
    run_mirth_ddl(mirth_url, "postgres", CHANNELS)
    ours, theirs = postgres_catalog(pannier_url), postgres_catalog(mirth_url)
    assert len(theirs["tables"]) == 15 + 6 * len(CHANNELS)
    assert {row[0] for row in ours["tables"]} >= {"d_m1", "d_mcm2", "schema_info"}, (
        "PostgreSQL folds Mirth's unquoted names to lower case"
    )
    assert {row[0] for row in ours["sequences"]} == {
        "event_sequence",
        "person_sequence",
        "configuration_sequence",
        "debug_usage_sequence",
        "d_msq1",
        "d_msq2",
    }, "D_MSQn is a sequence on PostgreSQL, not a table"
    assert_same(ours, theirs)
    assert seed_rows(pannier_url) == seed_rows(mirth_url)


def sqlite_shape(url: str) -> dict:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            table: {
                "columns": [(c["name"], c["nullable"]) for c in inspector.get_columns(table)],
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], i["column_names"]) for i in inspector.get_indexes(table)
                ),
                "foreign keys": sorted(
                    (
                        f["referred_table"],
                        f["constrained_columns"],
                        f["referred_columns"],
                        f["options"].get("ondelete"),
                    )
                    for f in inspector.get_foreign_keys(table)
                ),
            }
            for table in inspector.get_table_names()
        }
    finally:
        engine.dispose()


async def test_sqlite_has_mysqls_tables_and_columns(tmp_path) -> None:
    """SQLite: the tables, columns (names, order, nullability), keys and indexes of Mirth's
    MySQL DDL, which SQLite runs once ENGINE=InnoDB and AUTO_INCREMENT are taken out."""
    ours, theirs = f"sqlite:///{tmp_path / 'pannier.db'}", f"sqlite:///{tmp_path / 'mirth.db'}"
    await pannier_schema(ours)
    run_mirth_ddl(theirs, "sqlite", CHANNELS)
    pannier, mirth = sqlite_shape(ours), sqlite_shape(theirs)
    assert sorted(pannier) == sorted(mirth)
    for table in mirth:
        assert pannier[table] == mirth[table], table
