"""Getting a database ready: the ``standalone``, ``takeover`` and ``auto`` modes, channel tables.

* :func:`prepare_database` runs once at start-up. ``standalone`` creates whatever core table
  (and, on PostgreSQL, core sequence) is missing and seeds Mirth's install rows (SCHEMA_INFO,
  the ``admin`` user with Mirth's PBKDF2 hash, the core CONFIGURATION rows) when SCHEMA_INFO is
  empty. ``takeover`` reads ``SCHEMA_INFO.VERSION``, accepts Mirth 4.5.x and 4.6.0 only, and
  creates nothing but ``D_CHANNELS`` if it is missing (Donkey itself creates that one when Mirth
  starts). ``auto`` is ``takeover`` when SCHEMA_INFO exists and ``standalone`` otherwise.
* :func:`open_channel` runs when a channel is deployed: it finds the channel's
  ``LOCAL_CHANNEL_ID`` in ``D_CHANNELS`` or allocates ``MAX + 1`` (as Mirth's
  ``ChannelController.createChannel``), then creates whichever of the channel's tables
  (``D_Mn``, ``D_MMn``, ``D_MCn``, ``D_MCMn``, ``D_MAn``, ``D_MSn``, ``D_MSQn``) is missing, as
  Mirth's ``checkAndCreateChannelTables`` does, in every mode.

Both run inside :func:`schema_lock`, so several Pannier processes starting at once on one
empty database create one schema and one admin, and never hand out one local channel id
twice: MySQL/MariaDB ``GET_LOCK``, PostgreSQL ``pg_advisory_xact_lock``, SQLite
``BEGIN IMMEDIATE``. Everything is re-read inside the lock before anything is created.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pannier.store import schema

log = logging.getLogger("pannier.store.setup")

MODES = ("standalone", "takeover", "auto")

#: Seconds to wait for another process holding the schema lock.
LOCK_TIMEOUT = 60

#: PostgreSQL advisory lock key (advisory locks are scoped to the database already).
PG_LOCK_KEY = int.from_bytes(b"pannier", "big")

#: MySQL/MariaDB lock name; GET_LOCK names are server-wide, so the database name is appended.
MYSQL_LOCK_NAME = "pannier_schema"

_ACCEPTED = re.compile(r"4\.5\.\d+|4\.6\.0")


class SchemaError(Exception):
    """The database cannot be used in the requested mode; the text says what was found."""


def accepted_version(version: str | None) -> bool:
    """Whether takeover accepts a database whose ``SCHEMA_INFO.VERSION`` is ``version``
    (Mirth 4.5.x and 4.6.0 share the Donkey DDL, mirth-compat §0 and §10)."""
    return version is not None and _ACCEPTED.fullmatch(version.strip()) is not None


@dataclass(frozen=True)
class Catalog:
    """What the database holds, names upper-cased (PostgreSQL stores them lower-case)."""

    tables: frozenset[str]
    sequences: frozenset[str]


def read_catalog(conn: Connection) -> Catalog:
    inspector = sa.inspect(conn)
    tables = frozenset(name.upper() for name in inspector.get_table_names())
    sequences: frozenset[str] = frozenset()
    if conn.dialect.name == "postgresql":
        sequences = frozenset(name.upper() for name in inspector.get_sequence_names())
    return Catalog(tables, sequences)


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, holding Pannier's schema lock until the block ends (the
    transaction commits on success, rolls back on error).

    MySQL/MariaDB: ``GET_LOCK('pannier_schema.<database>', 60)`` for the session, then a
    transaction (MySQL commits DDL implicitly, the lock spans it all). PostgreSQL: one
    transaction that starts with ``pg_advisory_xact_lock``; the DDL is transactional too.
    SQLite: one transaction, which must be ``BEGIN IMMEDIATE`` (the store's engine begins
    every transaction so) to take the write lock at once.
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if not schema.is_mysql(dialect):
            with conn.begin():
                if dialect == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}s'")
                    try:
                        conn.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY}
                        )
                    except sa.exc.OperationalError as exc:  # 55P03: lock_timeout reached
                        raise SchemaError(
                            f"could not take the schema lock (advisory lock {PG_LOCK_KEY}) "
                            f"within {LOCK_TIMEOUT} s: another process is preparing this "
                            "database"
                        ) from exc
                yield conn
            return
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
        name = f"{MYSQL_LOCK_NAME}.{database}"[:64]
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": LOCK_TIMEOUT}
        ).scalar()
        conn.commit()
        if got != 1:
            raise SchemaError(
                f"could not take the schema lock {name!r} within {LOCK_TIMEOUT} s: "
                "another process is preparing this database"
            )
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()
            except sa.exc.DBAPIError:  # connection lost: the server released the lock
                conn.invalidate()


def prepare_database(engine: Engine, mode: str) -> str:
    """Make the database ready for Pannier in ``mode`` (``standalone``, ``takeover`` or
    ``auto``) and return the mode applied (``auto`` resolves to one of the other two).
    Raises :class:`SchemaError` when a takeover finds no Mirth database of a known version.
    Safe to run from several processes at once."""
    if mode not in MODES:
        raise ValueError(f"unknown database mode {mode!r}; expected one of {', '.join(MODES)}")
    with schema_lock(engine) as conn:
        catalog = read_catalog(conn)
        if mode == "auto":
            mode = "takeover" if "SCHEMA_INFO" in catalog.tables else "standalone"
        if mode == "takeover":
            _takeover(conn, catalog)
        else:
            _standalone(conn, catalog)
    return mode


def _describe(names: Iterable[str]) -> str:
    names = sorted(names)
    if not names:
        return "no tables at all"
    shown = ", ".join(names[:12])
    more = f" and {len(names) - 12} more" if len(names) > 12 else ""
    return f"{len(names)} table(s): {shown}{more}"


def _takeover(conn: Connection, catalog: Catalog) -> None:
    url = conn.engine.url.render_as_string(hide_password=True)
    if "SCHEMA_INFO" not in catalog.tables:
        raise SchemaError(
            f"takeover: {url} has no SCHEMA_INFO table, so it is not a Mirth database "
            f"(found {_describe(catalog.tables)}); use database mode 'standalone' to create "
            "a new schema"
        )
    metadata = sa.MetaData()
    schema.core_tables(metadata)
    info = metadata.tables["SCHEMA_INFO"]
    versions = [row[0] for row in conn.execute(sa.select(info.c.VERSION))]
    if len(versions) != 1 or not accepted_version(versions[0]):
        found = (
            "no row"
            if not versions
            else ", ".join(repr(v) for v in versions)
            if len(versions) > 1
            else repr(versions[0])
        )
        raise SchemaError(
            f"takeover: SCHEMA_INFO.VERSION in {url} is {found}; Pannier takes over Mirth "
            "4.5.x and 4.6.0 databases only (upgrade the database with Mirth first)"
        )
    missing = [name for name in schema.EXPECTED_CORE_TABLES if name not in catalog.tables]
    if missing:
        log.warning("takeover: Mirth %s database without %s", versions[0], ", ".join(missing))
    _ensure_channels_table(conn, catalog)
    log.info("takeover of Mirth %s database %s", versions[0], url)


def _standalone(conn: Connection, catalog: Catalog) -> None:
    dialect = conn.dialect.name
    metadata = sa.MetaData()
    schema.core_tables(metadata, dialect)
    created: list[str] = []
    if dialect == "postgresql":
        for sequence in schema.core_sequences():
            if sequence.name.upper() not in catalog.sequences:
                sequence.create(conn, checkfirst=False)
                created.append(sequence.name)
    for table in metadata.sorted_tables:
        if table.name.upper() not in catalog.tables:
            schema.create_table(conn, table)
            created.append(table.name)
    if created:
        log.info("created %s", ", ".join(created))
    _seed(conn, metadata)


def _seed(conn: Connection, metadata: sa.MetaData) -> None:
    """Mirth's install rows, once: while SCHEMA_INFO is empty (it is written last)."""
    t = metadata.tables
    info = t["SCHEMA_INFO"]
    versions = [row[0] for row in conn.execute(sa.select(info.c.VERSION))]
    if versions:
        if not any(accepted_version(v) for v in versions):
            log.warning(
                "standalone: SCHEMA_INFO.VERSION is %s, not a Mirth version Pannier "
                "knows (4.5.x, 4.6.0)",
                ", ".join(versions),
            )
        return
    person, password = t["PERSON"], t["PERSON_PASSWORD"]
    if conn.execute(sa.select(person.c.ID).where(person.c.USERNAME == "admin")).first() is None:
        result = conn.execute(sa.insert(person).values(USERNAME="admin", LOGGED_IN=False))
        (admin_id,) = result.inserted_primary_key or (None,)
        # As mysql-database.sql: no PASSWORD_DATE.
        conn.execute(
            sa.insert(password).values(
                PERSON_ID=admin_id, PASSWORD=schema.MIRTH_ADMIN_PASSWORD_HASH
            )
        )
    configuration = t["CONFIGURATION"]
    present = {
        (row[0], row[1])
        for row in conn.execute(sa.select(configuration.c.CATEGORY, configuration.c.NAME))
    }
    rows = [
        {"CATEGORY": c, "NAME": n, "VALUE": v}
        for c, n, v in schema.DEFAULT_CONFIGURATION
        if (c, n) not in present
    ]
    if rows:
        conn.execute(sa.insert(configuration), rows)
    conn.execute(sa.insert(info).values(VERSION=schema.SCHEMA_VERSION))
    log.info("seeded a new Mirth %s schema (admin user, core configuration)", schema.SCHEMA_VERSION)


def _ensure_channels_table(conn: Connection, catalog: Catalog) -> sa.Table:
    metadata = sa.MetaData()
    schema.core_tables(metadata, conn.dialect.name)
    channels = metadata.tables["D_CHANNELS"]
    if "D_CHANNELS" not in catalog.tables:
        schema.create_table(conn, channels)
        log.info("created D_CHANNELS")
    return channels


def open_channel(engine: Engine, channel_id: str) -> int:
    """The channel's ``LOCAL_CHANNEL_ID``, allocated (``MAX + 1``) when the channel is new, with
    every missing table of the channel created. Race-free between Pannier processes (schema
    lock); a Java Mirth node taking the same id at the same moment makes the insert fail, and
    it is retried, three attempts as Mirth's own loop."""
    for attempt in range(3):
        try:
            with schema_lock(engine) as conn:
                local_id = _local_channel_id(conn, channel_id)
                ensure_channel_tables(conn, local_id)
            return local_id
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
            log.warning("local channel id for %s taken concurrently; retrying", channel_id)
    raise AssertionError("unreachable")


def _local_channel_id(conn: Connection, channel_id: str) -> int:
    channels = _ensure_channels_table(conn, read_catalog(conn))
    local_id = conn.execute(
        sa.select(channels.c.LOCAL_CHANNEL_ID).filter_by(CHANNEL_ID=channel_id)
    ).scalar()
    if local_id is None:
        local_id = (
            conn.execute(sa.select(sa.func.max(channels.c.LOCAL_CHANNEL_ID))).scalar() or 0
        ) + 1
        conn.execute(sa.insert(channels).values(LOCAL_CHANNEL_ID=local_id, CHANNEL_ID=channel_id))
        log.info("channel %s gets local channel id %d", channel_id, local_id)
    return int(local_id)


def ensure_channel_tables(conn: Connection, local_channel_id: int) -> list[str]:
    """Create whichever of the channel's tables (and its PostgreSQL ``D_MSQn`` sequence) is
    missing, with Mirth's indexes, and make sure ``D_MSQn`` holds the next id. Returns the
    names created. Call it inside :func:`schema_lock`."""
    dialect = conn.dialect.name
    catalog = read_catalog(conn)
    tables = schema.ChannelTables(local_channel_id, dialect)
    created: list[str] = []
    for table in tables.tables_for(dialect):
        if table.name.upper() not in catalog.tables:
            schema.create_table(conn, table)
            created.append(table.name)
    message = tables.message
    # A recreated sequence must not hand out ids D_Mn already has (Mirth would restart at 1).
    next_id = (conn.execute(sa.select(sa.func.max(message.c.ID))).scalar() or 0) + 1
    if dialect == "postgresql":
        sequence = tables.message_sequence
        if sequence.name.upper() not in catalog.sequences:
            sequence.create(conn, checkfirst=False)
            created.append(sequence.name)
            if next_id > 1:
                conn.execute(
                    sa.text(f"SELECT setval('{sequence.name}', :value)"), {"value": next_id - 1}
                )
    else:
        sequence_table = tables.sequence
        if not conn.execute(sa.select(sa.func.count()).select_from(sequence_table)).scalar():
            conn.execute(sa.insert(sequence_table).values(ID=next_id))
    if created:
        log.info("channel %d: created %s", local_channel_id, ", ".join(created))
    return created
