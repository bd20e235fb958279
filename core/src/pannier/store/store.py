"""The message store: one database, Mirth's tables, a group-committed write path.

Every write is a :class:`Unit` of work (the statements one pipeline step needs to make durable).
Units go to a committer task that takes everything pending, runs it in **one transaction** —
statements of the same shape executed together as multi-row inserts or ``executemany`` —
commits, and wakes the callers: in one worker thread hop, or on MariaDB/MySQL and PostgreSQL in
one round trip from the event loop (:mod:`pannier.store.mysql_wire`, libpq's pipeline). A caller
that awaited
:meth:`Store.commit` has its rows durable. If a batch fails, its units are retried one by one
so one bad unit fails alone.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from pannier.sequences import SequenceAllocator
from pannier.store import mysql_wire, schema, setup
from pannier.store.driver import (
    DriverStatements,
    LibpqForm,
    libpq_parameters,
    literal_kit,
    run_libpq_pipeline,
    run_libpq_pipeline_async,
    run_multi_statement,
    wrap_driver_error,
)
from pannier.store.statistics import COLUMNS, Deltas
from pannier.threads import OwnThread

log = logging.getLogger("pannier.store")
T = TypeVar("T")

# Statement priorities inside one batch: parents before children, inserts before updates.
INSERT_MESSAGE, INSERT_CONNECTOR, INSERT_CONTENT, INSERT_METADATA = 0, 1, 2, 3
UPDATE_CONNECTOR, UPDATE_MESSAGE = 4, 5
#: Largest multi-statement text sent at once (MariaDB's max_allowed_packet is 16 MiB).
MULTI_STATEMENT_BYTES = 4 * 1024 * 1024


class StoreError(Exception):
    """A write could not be made durable; the text says why."""


class greatest(FunctionElement[Any]):
    """``GREATEST(a, b)``; SQLite spells it ``MAX(a, b)``."""

    inherit_cache = True


@compiles(greatest)
def _greatest_default(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"MAX({compiler.process(element.clauses, **kw)})"


@dataclass(eq=False)
class Unit:
    """Statements to make durable together.

    ``ops`` are ``(priority, statement, params)``. A unit for a new message sets
    ``new_message_for`` and ``build``: the committer allocates the id, then calls
    ``build(message_id)`` to fill ``ops``. ``custom`` callables run last in the same
    transaction (statements that need a result, such as statistics upserts).
    """

    ops: list[tuple[int, Any, dict[str, Any]]] = field(default_factory=list)
    new_message_for: ChannelStore | None = None
    build: Callable[[int], None] | None = None
    custom: list[Callable[[Connection], None]] = field(default_factory=list)
    message_id: int | None = None
    error: BaseException | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def add(self, priority: int, statement: Any, params: dict[str, Any]) -> None:
        self.ops.append((priority, statement, params))


class _Writer:
    """A committer's own connection, kept from one batch to the next: no pool checkout, reset
    (a ROLLBACK round trip) or ping per batch. Used by one worker thread, or the committer's
    task on the event loop (``wire``), at a time."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.wire: mysql_wire.WireSocket | None = None
        """MariaDB/MySQL: the connection's socket, for batches sent from the event loop."""
        self.thread = OwnThread("pannier-store-writer")
        """Where the connection's blocking work runs (a hand-off per batch costs a fraction
        of ``trio.to_thread``'s: SQLite DEVELOPMENT 865 -> 1,021 msg/s in pairs)."""

    def close(self, invalidate: bool = False) -> None:
        """Give the connection up: back to the pool, or closed (``invalidate``) when its
        state is not known, so that the server rolls back whatever it held open."""
        wire, self.wire = self.wire, None
        if wire is not None:
            wire.close()
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                if invalidate:
                    conn.invalidate()
                conn.close()
            except Exception as exc:  # already broken: the pool drops it
                log.debug("closing a writer connection failed: %s", exc)


class TableSequence:
    """A channel's ``D_MSQn`` used as Mirth does, in its own committed transaction (as
    ``BufferedDao.getNextMessageId``).

    MySQL/MariaDB and SQLite: a one-row table holding the *next* id, locked read then
    increment; ``reserve(n)`` returns ``[v, v+n)`` and stores ``v+n``. PostgreSQL: a real
    sequence read with ``nextval('D_MSQn')``, ``n`` values at once; they are ascending but
    need not be contiguous when several nodes draw at the same moment.
    """

    def __init__(self, store: Store, tables: schema.ChannelTables) -> None:
        self.key = f"{store.url}#{tables.sequence.name}"
        self._store = store
        self._table = tables.sequence
        self._sequence = tables.message_sequence
        self._lock = threading.Lock()

    def reserve(self, count: int) -> list[int]:
        table = self._table
        with self._lock, self._store.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                with conn.begin():
                    ids = (
                        conn.execute(
                            sa.select(self._sequence.next_value()).select_from(
                                sa.func.generate_series(1, count)
                            )
                        )
                        .scalars()
                        .all()
                    )
                return sorted(ids)
            select = sa.select(table.c.ID)
            if conn.dialect.name != "sqlite":
                select = select.with_for_update()
            with conn.begin():  # on SQLite: BEGIN IMMEDIATE, the write lock at once
                first = conn.execute(select).scalar_one()
                conn.execute(sa.update(table).values(ID=table.c.ID + count))
        return list(range(first, first + count))


class ChannelStore:
    """One channel's tables and its statements, compiled once per deploy."""

    def __init__(self, store: Store, channel_id: str, local_channel_id: int) -> None:
        self.store = store
        self.channel_id = channel_id
        self.local_channel_id = local_channel_id
        self.tables = schema.ChannelTables(local_channel_id)
        t = self.tables
        self.sequence = TableSequence(store, t)
        self.insert_message = sa.insert(t.message)
        self.insert_connector = sa.insert(t.connector_message)
        self.insert_content = sa.insert(t.content)
        self.update_connector = sa.update(t.connector_message).where(
            t.connector_message.c.MESSAGE_ID == sa.bindparam("b_message_id"),
            t.connector_message.c.ID == sa.bindparam("b_metadata_id"),
        )
        self.mark_processed = (
            sa.update(t.message)
            .where(t.message.c.ID == sa.bindparam("b_message_id"))
            .values(PROCESSED=True)
        )
        self._metadata_columns: tuple[str, ...] = ()
        self._insert_metadata: Any = None

    def set_metadata_columns(self, columns: Iterable[tuple[str, str]]) -> None:
        """Use these ``(name, type)`` custom metadata columns; the table must have them
        (:meth:`Store.add_metadata_columns`)."""
        columns = tuple(columns)
        self._metadata_columns = tuple(name for name, _type in columns)
        table = self.tables.custom_metadata_for(self._metadata_columns)
        self._insert_metadata = sa.insert(table)

    def add_received(self, unit: Unit, message_id: int, received: Any) -> None:
        """Add a new message's ``D_M`` row and its source ``D_MM`` row (status RECEIVED), as
        Mirth's "create raw message" transaction writes them."""
        server_id = self.store.server_id
        unit.add(
            INSERT_MESSAGE,
            self.insert_message,
            {
                "ID": message_id,
                "SERVER_ID": server_id,
                "RECEIVED_DATE": received,
                "PROCESSED": False,
                "ORIGINAL_ID": None,
                "IMPORT_ID": None,
                "IMPORT_CHANNEL_ID": None,
            },
        )
        unit.add(
            INSERT_CONNECTOR,
            self.insert_connector,
            {
                "ID": 0,
                "MESSAGE_ID": message_id,
                "SERVER_ID": server_id,
                "RECEIVED_DATE": received,
                "STATUS": "R",
                "CONNECTOR_NAME": "Source",
                "SEND_ATTEMPTS": 0,
                "SEND_DATE": None,
                "RESPONSE_DATE": None,
                "ERROR_CODE": 0,
                "CHAIN_ID": 0,
                "ORDER_ID": 0,
            },
        )

    def add_content(
        self,
        unit: Unit,
        message_id: int,
        metadata_id: int,
        content_type: int,
        content: str,
        data_type: str | None,
    ) -> None:
        """Add one ``D_MC`` content row (unencrypted)."""
        unit.add(
            INSERT_CONTENT,
            self.insert_content,
            {
                "METADATA_ID": metadata_id,
                "MESSAGE_ID": message_id,
                "CONTENT_TYPE": int(content_type),
                "CONTENT": content,
                "IS_ENCRYPTED": False,
                "DATA_TYPE": data_type,
            },
        )

    def add_custom_metadata(
        self, unit: Unit, message_id: int, metadata_id: int, values: dict[str, Any]
    ) -> None:
        if self._insert_metadata is None or not values:
            return
        row: dict[str, Any] = {"MESSAGE_ID": message_id, "METADATA_ID": metadata_id}
        row.update({name: values.get(name) for name in self._metadata_columns})
        unit.add(INSERT_METADATA, self._insert_metadata, row)

    def flush_statistics(self, conn: Connection, server_id: str, deltas: Deltas) -> None:
        """Write statistic deltas: aggregate row first, then connector rows (MIRTH-3042)."""
        table = self.tables.statistics
        for metadata_id in sorted(deltas, key=lambda k: -1 if k is None else k):
            values = deltas[metadata_id]
            changes = {}
            for status, column in COLUMNS.items():
                delta = values.get(status, 0)
                if delta:
                    for name in (column, f"{column}_LIFETIME"):
                        changes[name] = greatest(table.c[name] + delta, 0)
            if not changes:
                continue
            match = (
                table.c.METADATA_ID.is_(None)
                if metadata_id is None
                else table.c.METADATA_ID == metadata_id
            )
            result = conn.execute(
                sa.update(table).where(match, table.c.SERVER_ID == server_id).values(**changes)
            )
            if result.rowcount == 0:
                row: dict[str, Any] = {"METADATA_ID": metadata_id, "SERVER_ID": server_id}
                for status, column in COLUMNS.items():
                    value = max(values.get(status, 0), 0)
                    row[column] = row[f"{column}_LIFETIME"] = value
                conn.execute(sa.insert(table).values(**row))


class Store:
    """One database holding Mirth's schema, shared by every channel of the engine."""

    def __init__(
        self,
        url: str,
        server_id: str,
        allocator: SequenceAllocator,
        *,
        pool_size: int = 8,
        max_batch: int = 256,
        retry_seconds: float = 60.0,
        async_batches: bool = True,
    ) -> None:
        self.url = url
        self.server_id = server_id
        self.allocator = allocator
        self.max_batch = max_batch
        self.retry_seconds = retry_seconds
        self.engine: Engine = _create_engine(url, pool_size)
        self.dialect = self.engine.dialect.name
        self._limiter = trio.CapacityLimiter(pool_size)
        # Two committers on a server: one commits while the other gathers the next batch.
        # More split the same messages into smaller batches, each paying its own statements
        # and commit (measured: 4 -> 2 cut the engine's CPU per message; bench/RESULTS.md).
        writers = 1 if self.dialect == "sqlite" else min(2, pool_size)
        self.writers = writers
        self._send, self._receive = trio.open_memory_channel[Unit](max_batch * 4)
        self._running = False
        self._nursery: trio.Nursery | None = None
        self._prefetching: set[str] = set()
        """Sequences whose ids are being fetched ahead (:meth:`_prefetch_ids`)."""
        self.metadata = sa.MetaData()
        schema.core_tables(self.metadata)
        self._driver_statements = DriverStatements(self.engine.dialect)
        # MariaDB/MySQL answer each statement in its own round trip (their drivers rewrite
        # only INSERTs into one statement): a batch's statements go out as one
        # multi-statement text instead (_create_engine enables them on the store's
        # connections), so a batch costs one round trip and its commit.
        self._multi_statement = self.dialect in ("mysql", "mariadb")
        # ...and from the event loop, on the connection's own socket (store/mysql_wire.py;
        # PostgreSQL: libpq's pipeline awaited with trio): in a worker thread the driver
        # waits for the GIL after each of its blocking calls.
        self.async_batches = async_batches and (
            self._multi_statement or self.dialect == "postgresql"
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the committer task(s) until cancelled. Afterwards every commit fails fast."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for _ in range(self.writers):
                    nursery.start_soon(self._committer)
                self._running = True
                task_status.started()
        finally:
            self._running = False
            while True:
                try:
                    unit = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                unit.error = StoreError("the store is shutting down")
                unit.done.set()

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.engine.dispose)

    async def create_schema(self, mode: str = "standalone") -> str:
        """Prepare the database for ``mode`` (``standalone``, ``takeover`` or ``auto``; see
        :func:`pannier.store.setup.prepare_database`) and return the mode applied. Raises
        :class:`pannier.store.setup.SchemaError` when a takeover finds no Mirth database it
        knows."""
        return await self.run_sync(self._create_schema, mode)

    def _create_schema(self, mode: str = "standalone") -> str:
        return setup.prepare_database(self.engine, mode)

    async def save_channel(self, channel_id: str, name: str, revision: int, xml: str) -> bool:
        """Write a channel's definition to Mirth's ``CHANNEL`` table (insert, or update when
        the stored revision differs). Returns True when a row was written."""
        return await self.run_sync(self._save_channel, channel_id, name, revision, xml)

    def _save_channel(self, channel_id: str, name: str, revision: int, xml: str) -> bool:
        table = self.metadata.tables["CHANNEL"]
        with self.engine.begin() as conn:
            stored = conn.execute(
                sa.select(table.c.REVISION).where(table.c.ID == channel_id)
            ).first()
            if stored is None:
                conn.execute(
                    sa.insert(table).values(
                        ID=channel_id, NAME=name, REVISION=revision, CHANNEL=xml
                    )
                )
                return True
            if stored.REVISION == revision:
                return False
            conn.execute(
                sa.update(table)
                .where(table.c.ID == channel_id)
                .values(NAME=name, REVISION=revision, CHANNEL=xml)
            )
            return True

    async def open_channel(self, channel_id: str) -> ChannelStore:
        """The channel's tables, creating its ``D_CHANNELS`` row and tables when missing."""
        return await self.run_sync(self._open_channel, channel_id)

    def _open_channel(self, channel_id: str) -> ChannelStore:
        # LOCAL_CHANNEL_ID (MAX + 1) and missing tables, under the schema lock.
        return ChannelStore(self, channel_id, setup.open_channel(self.engine, channel_id))

    async def add_metadata_columns(
        self, channel_store: ChannelStore, columns: Iterable[tuple[str, str]]
    ) -> None:
        """``ALTER TABLE D_MCMn ADD COLUMN`` for each custom metadata column not there yet,
        with Mirth's types per database (mirth-compat §1.2)."""
        await self.run_sync(self._add_metadata_columns, channel_store, tuple(columns))

    def _add_metadata_columns(
        self, channel_store: ChannelStore, columns: tuple[tuple[str, str], ...]
    ) -> None:
        table = channel_store.tables.custom_metadata.name
        with self.engine.begin() as conn:
            existing = {
                c["name"].upper()
                for c in sa.inspect(conn).get_columns(schema.stored_name(table, self.dialect))
            }
            preparer = conn.dialect.identifier_preparer
            for name, kind in columns:
                if name.upper() in existing:
                    continue
                sql_type = schema.metadata_column_type(self.dialect, kind)
                conn.exec_driver_sql(
                    f"ALTER TABLE {preparer.quote(table)} ADD COLUMN "
                    f"{preparer.quote_identifier(name)} {sql_type}"
                )

    # --- writing ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The timestamp to store: UTC, naive except where the column keeps a time zone."""
        now = datetime.now(UTC)
        if self.dialect == "postgresql":
            return now
        # Naive: its date and time combined (a quarter of replace(tzinfo=None)'s cost; this
        # runs four times per message).
        return datetime.combine(now.date(), now.time())

    async def commit(self, unit: Unit) -> None:
        """Make ``unit`` durable; raises :class:`StoreError` if it could not be."""
        if not self._running:
            raise StoreError("the store is not running")
        if unit.new_message_for is None and not unit.ops and not unit.custom:
            return  # nothing to write (storage disabled): no committer or thread round trip
        # The unit is handed over without yielding (send() would yield once it is queued,
        # only to wait for ``done`` afterwards): a task switch less per commit.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send.send_nowait(unit)
        except trio.WouldBlock:
            await self._send.send(unit)
        await unit.done.wait()
        if unit.error is not None:
            raise StoreError(str(unit.error)) from unit.error

    async def commit_now(self, unit: Unit) -> None:
        """Commit ``unit`` in a worker thread directly, without the committer task (for work
        done while shutting down, after the committer may have stopped)."""
        await trio.to_thread.run_sync(self._commit_batch, [unit], limiter=self._limiter)
        if unit.error is not None:
            raise StoreError(str(unit.error)) from unit.error

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking database work in a worker thread (one hop for the whole function)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _committer(self) -> None:
        writer = _Writer()
        try:
            while True:
                try:  # units that arrived during the last batch: start at once, no yield
                    batch = [self._receive.receive_nowait()]
                except trio.WouldBlock:
                    batch = [await self._receive.receive()]
                while len(batch) < self.max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    if self.async_batches and not any(unit.custom for unit in batch):
                        # Shielded as a thread is: the batch in flight is finished.
                        with trio.CancelScope(shield=True):
                            if self._multi_statement:
                                await self._commit_batch_async(batch, writer)
                            else:
                                await self._pipeline_batch_async(batch, writer)
                    else:
                        await writer.thread.run(self._commit_batch, batch, writer)
                except BaseException as exc:  # cancellation included: never leave a caller waiting
                    for unit in batch:
                        if not unit.done.is_set():
                            unit.error = unit.error or exc
                            unit.done.set()
                    raise
                for unit in batch:
                    unit.done.set()
                self._prefetch_ids(batch)
        finally:
            writer.close()
            writer.thread.close()

    def _prefetch_ids(self, batch: list[Unit]) -> None:
        """Start fetching message ids ahead of need for the batch's channels whose allocator
        asks for it, in a worker thread of their own, so no later batch waits for them."""
        nursery = self._nursery
        if nursery is None:
            return
        for unit in batch:
            channel_store = unit.new_message_for
            if channel_store is None:
                continue
            sequence = channel_store.sequence
            if sequence.key in self._prefetching or not self.allocator.wants_prefetch(sequence):
                continue
            self._prefetching.add(sequence.key)
            nursery.start_soon(self._prefetch, sequence)

    async def _prefetch(self, sequence: TableSequence) -> None:
        try:
            await self.run_sync(self.allocator.prefetch, sequence)
        except Exception as exc:  # the batches ask for ids themselves, with their retries
            log.warning("fetching message ids ahead failed: %s: %.200s", type(exc).__name__, exc)
        finally:
            self._prefetching.discard(sequence.key)

    async def _commit_batch_async(self, batch: list[Unit], writer: _Writer) -> None:
        """MariaDB/MySQL: write ``batch`` from the event loop: its statements and a COMMIT in
        one query on the writer's socket (:func:`pannier.store.mysql_wire.run_query`).

        Whatever this cannot do goes to :meth:`_commit_batch` in a worker thread, with its
        retries and its one-by-one fallback: a batch before the writer has a connection (it
        is made there), ids the allocator must fetch from the database, and any failure, in
        which case the connection is closed first (the server rolls back what it had)."""
        wire = writer.wire
        if wire is None or not self._allocate_ids_nowait(batch):
            await writer.thread.run(self._commit_batch, batch, writer)
            return
        if not any(unit.ops for unit in batch):
            return  # id allocation only
        try:
            assert writer.conn is not None
            cursor = writer.conn.connection.cursor()
            try:
                statements = self._literal_statements(batch, cursor)
            finally:
                cursor.close()
            if statements is None:
                raise ValueError("a statement of the batch has no literal form")
            for chunk in _chunks([*statements, "COMMIT"]):
                sql = ";\n".join(chunk).encode(wire.encoding)
                await mysql_wire.run_query(wire.sock, sql)
            return
        except mysql_wire.NotForWire as exc:
            # Answers the wire does not know (a proxy speaking TLS the server did not report,
            # say): this connection's kind will not do better next time.
            self.async_batches = False
            log.warning(
                "store batches go through the driver in a worker thread from now on: %s", exc
            )
            await self._through_the_thread(batch, writer, exc, mysql_wire.NotForWire)
        except Exception as exc:
            await self._through_the_thread(batch, writer, exc, mysql_wire.WireError)

    async def _pipeline_batch_async(self, batch: list[Unit], writer: _Writer) -> None:
        """PostgreSQL: write ``batch`` from the event loop, its statements and its COMMIT in
        one libpq pipeline on the writer's connection (:func:`run_libpq_pipeline_async`).

        As for MariaDB (:meth:`_commit_batch_async`), whatever this cannot do goes to
        :meth:`_commit_batch` in the writer's thread: the first batch (the connection is made
        there), ids to fetch, values without a libpq form, and any failure, after closing
        the connection (the server rolls back what it had)."""
        conn = writer.conn
        if conn is None or conn.invalidated or not self._allocate_ids_nowait(batch):
            await writer.thread.run(self._commit_batch, batch, writer)
            return
        if not any(unit.ops for unit in batch):
            return  # id allocation only
        try:
            steps = self._libpq_steps(conn, batch)
        except Exception:  # a value libpq refuses (a NUL): the driver path says which unit
            steps = None
        if steps is None:
            await writer.thread.run(self._commit_batch, batch, writer)
            return
        try:
            await run_libpq_pipeline_async(conn, steps, commit=True)
        except Exception as exc:
            await self._through_the_thread(batch, writer, exc, sa.exc.DBAPIError)

    async def _through_the_thread(
        self, batch: list[Unit], writer: _Writer, exc: Exception, expected: type[Exception]
    ) -> None:
        """A batch from the event loop failed: close the writer's connection (the server
        rolls back what it had) and write the batch in the writer's thread, with its retries
        and one-by-one fallback. The database's own errors (``expected``) are logged quietly:
        the retry says what becomes of them."""
        log.log(
            logging.DEBUG if isinstance(exc, expected) else logging.WARNING,
            "batch from the event loop failed (%s: %s); through the driver",
            type(exc).__name__,
            (str(exc).splitlines() or [""])[0],
        )
        writer.close(invalidate=True)
        await writer.thread.run(self._commit_batch, batch, writer)

    def _allocate_ids_nowait(self, batch: list[Unit]) -> bool:
        """Give the batch's new messages their ids if the allocator has them at hand (event
        loop); False when some must come from the database (then :meth:`_allocate_ids`)."""
        for channel_store, units in _wanting_ids(batch).items():
            ids = self.allocator.next_ids_nowait(channel_store.sequence, len(units))
            if ids is None:
                return False
            _give_ids(units, ids)
        return True

    def _commit_batch(self, batch: list[Unit], writer: _Writer | None = None) -> None:
        """Allocate ids and write ``batch`` in one transaction (worker thread).

        Transient failures (deadlock, lock timeout, lost connection, database restarting)
        are retried with backoff for up to ``retry_seconds``: these units are accepted
        messages and must not be lost to a blip. A permanent failure of a batch falls back to
        one transaction per unit, so only the unit at fault fails.
        """
        try:
            self._with_retries(lambda: self._allocate_ids(batch), "message id allocation")
        except Exception as exc:
            for unit in batch:
                unit.error = exc
            return
        if not any(unit.ops or unit.custom for unit in batch):
            return  # id allocation only
        try:
            self._with_retries(lambda: self._write(batch, writer), f"write of {len(batch)} unit(s)")
            return
        except Exception as exc:
            if len(batch) == 1 or is_transient(exc):
                log.error("store write failed: %s", exc)
                for unit in batch:
                    unit.error = exc
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
        for unit in batch:
            try:
                self._write([unit], writer)
            except Exception as exc:
                log.error("store write failed: %s", exc)
                unit.error = exc

    def _write(self, batch: list[Unit], writer: _Writer | None = None) -> None:
        if writer is None:
            with self.engine.begin() as conn:
                self._execute(conn, batch)
            return
        if writer.conn is None:
            writer.conn = self.engine.connect()
        connection = writer.conn
        try:
            if self.async_batches and self._multi_statement and writer.wire is None:
                self._attach_wire(writer, connection)
            with connection.begin():
                if self.dialect == "postgresql":
                    self._execute_pipelined(connection, batch)
                else:
                    self._execute(connection, batch)
        except BaseException:
            writer.close()  # a lost connection is discarded; the retry takes a fresh one
            raise

    def _attach_wire(self, writer: _Writer, connection: Connection) -> None:
        """Let the next batches of this writer go from the event loop, if its connection
        allows (worker thread: asks the server)."""
        try:
            if any("ssl" in key.lower() for key in self.engine.url.query):
                # TLS asked for in the URL (a proxy may end it before the server can say so)
                raise mysql_wire.NotForWire("the database URL asks for TLS")
            writer.wire = mysql_wire.WireSocket.of(connection.connection.dbapi_connection)
        except mysql_wire.NotForWire as exc:
            self.async_batches = False  # the same for every connection of this URL
            log.info("store batches go through the driver in a worker thread: %s", exc)

    def _execute_pipelined(self, conn: Connection, batch: list[Unit]) -> None:
        """PostgreSQL: the batch's statements go out together and their results come back
        together (one round trip instead of one per statement), through libpq directly
        (:func:`~pannier.store.driver.run_libpq_pipeline`) when every statement can, with the
        COMMIT in the same round trip when no custom work follows; else psycopg's pipeline.
        An error is raised as SQLAlchemy's, so retries see it as usual."""
        steps = self._libpq_steps(conn, batch)
        if steps is not None:
            commit = not any(unit.custom for unit in batch)
            run_libpq_pipeline(conn, steps, commit=commit)
            if not commit:
                for unit in batch:
                    for custom in unit.custom:
                        custom(conn)
            return
        self._execute_psycopg_pipeline(conn, batch)

    def _libpq_steps(
        self, conn: Connection, batch: list[Unit]
    ) -> list[tuple[LibpqForm, list[list[bytes | None]]]] | None:
        """The batch as libpq statements and text parameters, or None when a statement or a
        value has no libpq form (psycopg's pipeline takes the batch then)."""
        encoding = conn.connection.driver_connection.info.encoding  # type: ignore[union-attr]
        steps: list[tuple[LibpqForm, list[list[bytes | None]]]] = []
        groups = _grouped(batch)
        for key in sorted(groups, key=lambda k: k[0]):
            statement, rows = groups[key]
            compiled = self._driver_statements.get(statement, tuple(rows[0]))
            if compiled is None or compiled.libpq is None:
                return None
            form = compiled.libpq
            try:
                converted = [
                    libpq_parameters(form, values, encoding)  # type: ignore[arg-type]
                    for values in compiled.parameters(rows)
                ]
            except TypeError:
                return None
            steps.append((form, converted))
        return steps

    def _execute_psycopg_pipeline(self, conn: Connection, batch: list[Unit]) -> None:
        import psycopg

        driver = conn.connection.driver_connection
        try:
            with driver.pipeline():  # type: ignore[union-attr]
                self._execute(conn, batch, custom=False)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance("pipelined batch", None, exc, psycopg.Error) from exc
        for unit in batch:  # they read results (rowcount), so after the pipeline
            for custom in unit.custom:
                custom(conn)

    def _with_retries(self, work: Callable[[], None], what: str) -> None:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                work()
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "%s failed (%s); retrying in %.2f s", what, str(exc).splitlines()[0], delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _allocate_ids(self, batch: list[Unit]) -> None:
        for channel_store, units in _wanting_ids(batch).items():
            _give_ids(units, self.allocator.next_ids(channel_store.sequence, len(units)))

    def _literal_statements(self, batch: list[Unit], cursor: Any) -> list[str] | None:
        """MariaDB/MySQL: the batch as SQL texts with their values inlined by the driver's
        escaping (multi-row INSERTs), in priority order; None elsewhere, or when a statement
        has no such form."""
        if not self._multi_statement:
            return None
        statements: list[str] = []
        groups = _grouped(batch)
        kit = literal_kit(cursor)
        for key in sorted(groups, key=lambda k: k[0]):
            statement, rows = groups[key]
            compiled = self._driver_statements.get(statement, tuple(rows[0]))
            if compiled is None:
                return None
            statements.extend(compiled.literal_sql(cursor, rows, kit=kit))
        return statements

    def _execute(self, conn: Connection, batch: list[Unit], custom: bool = True) -> None:
        cursor = conn.connection.cursor()  # this transaction's DB-API connection
        try:
            statements = self._literal_statements(batch, cursor)
            if statements is not None:
                for chunk in _chunks(statements):
                    run_multi_statement(conn, cursor, chunk)
            else:
                groups = _grouped(batch)
                for key in sorted(groups, key=lambda k: k[0]):
                    statement, rows = groups[key]
                    compiled = self._driver_statements.get(statement, tuple(rows[0]))
                    if compiled is not None:
                        compiled.run(conn, cursor, rows)
                    else:
                        conn.execute(statement, rows if len(rows) > 1 else rows[0])
        finally:
            cursor.close()
        if custom:
            for unit in batch:
                for run in unit.custom:
                    run(conn)


def _wanting_ids(batch: list[Unit]) -> dict[ChannelStore, list[Unit]]:
    """The batch's new messages still without an id, by channel."""
    wanting: dict[ChannelStore, list[Unit]] = {}
    for unit in batch:
        if unit.new_message_for is not None and unit.message_id is None:
            wanting.setdefault(unit.new_message_for, []).append(unit)
    return wanting


def _give_ids(units: list[Unit], ids: list[int]) -> None:
    for unit, message_id in zip(units, ids, strict=True):
        unit.message_id = message_id
        if unit.build is not None:
            unit.build(message_id)


def _chunks(statements: list[str]) -> list[list[str]]:
    """Statements cut, in order, into multi-statement texts of about
    :data:`MULTI_STATEMENT_BYTES` at most (well inside MariaDB's max_allowed_packet)."""
    chunks: list[list[str]] = []
    size = 0
    for sql in statements:
        if not chunks or size + len(sql) > MULTI_STATEMENT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(sql)
        size += len(sql) + 2
    return chunks


def _grouped(batch: list[Unit]) -> dict[tuple[Any, ...], tuple[Any, list[dict[str, Any]]]]:
    """The batch's rows by statement (in priority order when sorted by key): rows of one
    group bind the same parameters, so they go out as one executemany."""
    groups: dict[tuple[Any, ...], tuple[Any, list[dict[str, Any]]]] = {}
    for unit in batch:
        for priority, statement, params in unit.ops:
            key = (priority, id(statement), *params)
            if key not in groups:
                groups[key] = (statement, [])
            groups[key][1].append(params)
    return groups


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL once (the mode is kept in the file). Changing the journal
    mode answers "database is locked" at once, without the busy wait, while another process
    holds the file, so a few short retries cover engines starting together."""
    for attempt in range(50):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05 + 0.01 * attempt)


def _create_engine(url: str, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=2,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below rule
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _use_wal(cursor)
            # WAL + NORMAL: a commit is in the WAL file (the OS has it) before it returns, so
            # it survives the process being killed; only an OS crash or power loss can lose
            # the last transactions (docs/storage.md). FULL would fsync every commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # On the driver's connection: one statement, no SQLAlchemy execution context.
            driver = conn.connection.driver_connection
            try:
                driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                raise wrap_driver_error(conn, None, "BEGIN IMMEDIATE", exc) from exc

        return engine
    # Pre-ping on checkout keeps reads (API, recovery) from meeting a connection the server
    # ended. The hot path does not pay it: committers keep their connections (_Writer) and
    # retry a batch on a fresh one when theirs is lost.
    connect_args: dict[str, Any] = {}
    if url.startswith(("mysql", "mariadb")):
        # FOUND_ROWS (SQLAlchemy's own choice: rowcount = rows matched) and MULTI_STATEMENTS
        # (Store._execute sends a batch as one text; every value in it is escaped by the
        # driver, never pasted).
        connect_args["client_flag"] = _CLIENT_FOUND_ROWS | _CLIENT_MULTI_STATEMENTS
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        connect_args=connect_args,
    )


# MySQL client capability flags (the protocol's values, the same for every driver).
_CLIENT_FOUND_ROWS = 1 << 1
_CLIENT_MULTI_STATEMENTS = 1 << 16


#: Error codes that mean "try again": MySQL/MariaDB deadlock, lock wait timeout, server gone
#: or lost; PostgreSQL deadlock, serialization failure, shutdown, connection exceptions.
_TRANSIENT_MYSQL = {1205, 1213, 2003, 2006, 2013}
_TRANSIENT_PG_PREFIXES = ("40P01", "40001", "57P", "08")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same transaction later may succeed."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return True  # the connection is gone (DB-API InterfaceError: closed connection)
        if "can't change 'autocommit' now" in str(exc.orig):
            # psycopg's symptom of a pooled connection whose server ended it mid-statement:
            # the next connection will be fresh, so retrying helps.
            return True
        orig = exc.orig
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], int) and args[0] in _TRANSIENT_MYSQL:
            return True
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate and str(sqlstate).startswith(_TRANSIENT_PG_PREFIXES):
            return True
        if "database is locked" in str(orig):
            return True
        return isinstance(exc, sa.exc.OperationalError) and "connect" in str(orig).lower()
    return False


def new_server_id() -> str:
    return str(uuid.uuid4())
