"""What a database's catalog says about its tables, in comparable form (store tests only)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

Catalog = dict[str, list[tuple[Any, ...]]]


def _query(url: str, queries: dict[str, str], **params: Any) -> Catalog:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return {
                name: [tuple(row) for row in conn.execute(sa.text(sql), params)]
                for name, sql in queries.items()
            }
    finally:
        engine.dispose()


MYSQL = {
    "tables": "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION "
    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db ORDER BY 1",
    "columns": "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, "
    "IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db ORDER BY 1, 2",
    "indexes": "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, INDEX_TYPE "
    "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :db ORDER BY 1, 2, 3",
    "constraints": "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE "
    "FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = :db "
    "ORDER BY 1, 2",
    "key_columns": "SELECT TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION, COLUMN_NAME, "
    "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
    "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = :db "
    "ORDER BY 1, 2, 3",
    "foreign_keys": "SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, "
    "UNIQUE_CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE "
    "FROM information_schema.REFERENTIAL_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = :db ORDER BY 1, 2",
}


def mysql_catalog(url: str) -> Catalog:
    """information_schema TABLES, COLUMNS, STATISTICS, TABLE_CONSTRAINTS, KEY_COLUMN_USAGE and
    REFERENTIAL_CONSTRAINTS of the URL's database, plus ``SHOW CREATE TABLE`` of each table
    (its AUTO_INCREMENT counter removed)."""
    db = make_url(url).database
    catalog = _query(url, MYSQL, db=db)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            catalog["show_create"] = [
                (
                    name,
                    re.sub(
                        r" AUTO_INCREMENT=\d+",
                        "",
                        conn.exec_driver_sql(f"SHOW CREATE TABLE `{name}`").one()[1],
                    ),
                )
                for name, *_ in catalog["tables"]
            ]
    finally:
        engine.dispose()
    return catalog


POSTGRES = {
    "tables": "SELECT table_name, table_type FROM information_schema.tables "
    "WHERE table_schema = 'public' ORDER BY 1",
    "columns": "SELECT table_name, ordinal_position, column_name, data_type, udt_name, "
    "character_maximum_length, numeric_precision, numeric_scale, datetime_precision, "
    "is_nullable, column_default FROM information_schema.columns "
    "WHERE table_schema = 'public' ORDER BY 1, 2",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = 'public' ORDER BY 1, 2",
    "constraints": "SELECT conrelid::regclass::text, conname, contype, "
    "pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "foreign_keys": "SELECT constraint_name, unique_constraint_name, match_option, update_rule, "
    "delete_rule FROM information_schema.referential_constraints "
    "WHERE constraint_schema = 'public' ORDER BY 1",
    "sequences": "SELECT sequence_name, data_type, start_value, minimum_value, maximum_value, "
    "increment, cycle_option FROM information_schema.sequences "
    "WHERE sequence_schema = 'public' ORDER BY 1",
    "sequence_state": "SELECT sequencename, cache_size, last_value FROM pg_sequences "
    "WHERE schemaname = 'public' ORDER BY 1",
}


def postgres_catalog(url: str) -> Catalog:
    """information_schema tables, columns, referential_constraints and sequences, pg_indexes,
    pg_constraint (with each definition) and pg_sequences of the ``public`` schema."""
    return _query(url, POSTGRES)


def differences(ours: Catalog, theirs: Catalog) -> list[str]:
    """Human-readable differences, grouped by table (first tuple element)."""
    out: list[str] = []
    for part in sorted(set(ours) | set(theirs)):
        by_table: dict[Any, list[list[tuple[Any, ...]]]] = defaultdict(lambda: [[], []])
        for side, catalog in enumerate((ours, theirs)):
            for row in catalog.get(part, []):
                by_table[row[0]][side].append(row)
        for table in sorted(by_table, key=str):
            mine, mirth = by_table[table]
            if mine != mirth:
                only_ours = [r for r in mine if r not in mirth]
                only_theirs = [r for r in mirth if r not in mine]
                out.append(
                    f"{part} of {table}:\n  Pannier only: {only_ours}\n"
                    f"  Mirth only:   {only_theirs}"
                    + ("" if only_ours or only_theirs else "\n  (same rows, order differs)")
                )
    return out


def seed_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Mirth's install rows, for comparing two seeded databases."""
    return _query(
        url,
        {
            "SCHEMA_INFO": "SELECT VERSION FROM SCHEMA_INFO",
            "PERSON": "SELECT ID, USERNAME, LOGGED_IN, USERCONSENT FROM PERSON ORDER BY ID",
            "PERSON_PASSWORD": "SELECT PERSON_ID, PASSWORD, PASSWORD_DATE FROM PERSON_PASSWORD",
            "CONFIGURATION": "SELECT CATEGORY, NAME, VALUE FROM CONFIGURATION ORDER BY 1, 2",
        },
    )
