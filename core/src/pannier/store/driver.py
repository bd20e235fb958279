"""Hot-path statements run on the DB-API cursor, compiled by SQLAlchemy once.

The store writes a dozen-odd rows per message through a few INSERT and UPDATE statements.
Executing them as SQLAlchemy Core statements costs more Python time than the database spends
on them: every ``Connection.execute`` builds an execution context, looks up the compiled
cache, runs the event hooks and converts each row's parameters (profiled: about a third of the
engine's CPU time with SQLite). None of that changes from one batch to the next, so this
module does it once per statement and set of parameter names, with SQLAlchemy's own compiler
and type bind processors, and the batch goes straight to ``cursor.executemany``.

A statement this module cannot vouch for (expanding or escaped parameter names) is left to
SQLAlchemy: :func:`compile_for_driver` answers ``None``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import operator
import re
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Params = tuple[Any, ...] | dict[str, Any]


class DriverStatement:
    """One statement compiled for one dialect and one set of row keys: the driver's SQL text
    and the conversion of a row (``{key: value}``) into the driver's parameters."""

    __slots__ = ("_convert", "_fields", "_rows_writers", "libpq", "sql")

    def __init__(
        self,
        sql: str,
        convert: Callable[[dict[str, Any]], Params],
        libpq: LibpqForm | None = None,
        fields: Sequence[Field] | None = None,
    ) -> None:
        self.sql = sql
        self._convert = convert
        self.libpq = libpq
        """PostgreSQL: the statement as libpq runs it (see :func:`run_libpq_pipeline`)."""
        self._fields = {field.name: field for field in fields} if fields is not None else None
        """The parameters, by name (None: :func:`_row_writer` cannot write this statement)."""
        self._rows_writers: dict[Callable[[str], str], RowWriter | None] = {}

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Params]:
        convert = self._convert
        return [convert(row) for row in rows]

    def literal_sql(
        self,
        cursor: Any,
        rows: Sequence[dict[str, Any]],
        max_bytes: int = 1_000_000,
        kit: LiteralKit | None = None,
    ) -> list[str]:
        """MariaDB/MySQL: the statements for ``rows`` with their values inlined as the
        driver's ``cursor.mogrify`` would write them (:func:`_renderer`), to be sent together
        as one multi-statement text. An INSERT becomes multi-row INSERTs; other statements
        one statement per row. ``kit``: :func:`literal_kit` of ``cursor``, when the caller
        writes several statements on it (asked once instead of per statement)."""
        head, values = _split_values(self.sql)
        template = values if values is not None else self.sql
        render = self._fused_renderer(cursor, kit)
        if render is None:
            convert = self._convert
            to_text = _renderer(cursor, template)
            render = lambda row: to_text(convert(row))  # noqa: E731
        if values is None:
            return [render(row) for row in rows]
        # Rows are cut into INSERTs of about ``max_bytes`` (PyMySQL's own limit for the
        # multi-row INSERTs it writes), so large messages never make a text the server's
        # max_allowed_packet refuses.
        statements: list[str] = []
        chunk: list[str] = []
        size = 0
        for row in rows:
            text = render(row)
            if chunk and size + len(text) > max_bytes:
                statements.append(head + ", ".join(chunk))
                chunk, size = [], 0
            chunk.append(text)
            size += len(text) + 2
        statements.append(head + ", ".join(chunk))
        return statements

    def _fused_renderer(
        self, cursor: Any, kit: LiteralKit | None = None
    ) -> Callable[[dict[str, Any]], str] | None:
        """A row (``{key: value}``) straight to its text (an INSERT's ``(...)``, or the whole
        statement), converted and escaped in one generated function (:func:`_row_writer`),
        for the session's escaping mode; None when the statement or the driver needs the
        general path."""
        if self._fields is None:
            return None
        if kit is None:
            kit = literal_kit(cursor)
        if not kit:
            return None
        text_literal, value_literal = kit
        writers = self._rows_writers
        if text_literal not in writers:
            _, values = _split_values(self.sql)
            template = values if values is not None else self.sql
            writers[text_literal] = _row_writer(template, self._fields, text_literal)
        writer = writers[text_literal]
        if writer is None:
            return None
        return functools.partial(writer, value_literal)

    def run(self, conn: Connection, cursor: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Execute for ``rows`` on ``cursor`` (a cursor of ``conn``'s DB-API connection). A
        driver error is raised as SQLAlchemy's (``OperationalError``, ``IntegrityError``...),
        so retry logic sees the same exceptions as for Core statements."""
        try:
            if len(rows) == 1:
                cursor.execute(self.sql, self._convert(rows[0]))
            else:
                cursor.executemany(self.sql, self.parameters(rows))
        except conn.dialect.loaded_dbapi.Error as exc:
            raise wrap_driver_error(conn, cursor, self.sql, exc) from exc


def _renderer(cursor: Any, template: str) -> Callable[[Any], str]:
    """``template`` (``%s`` placeholders) with a row's values inlined, as ``cursor.mogrify``
    would write it, character for character. mogrify converts every value through several
    Python calls and formats the whole text again; with a dozen rows of a dozen values per
    message that was a quarter of the engine's CPU time on MariaDB (yappi, bench/RESULTS.md).
    Here each value is written by :func:`_literal_function` and the template is filled by one
    ``%`` format; named placeholders (``%(name)s``, PyMySQL's paramstyle) take the row's
    values by name. Drivers or templates this does not know fall back to mogrify."""
    literal = _literal_function(cursor)
    positional, names = _positional(template)
    if literal is None or "%%" in positional or "%(" in positional:
        mogrify = cursor.mogrify
        return lambda values: str(mogrify(template, values))
    if not names:
        return lambda values: positional % tuple(map(literal, values))
    if len(names) == 1:
        only = names[0]
        return lambda values: positional % (literal(values[only]),)
    by_name = operator.itemgetter(*names)
    return lambda values: positional % tuple(map(literal, by_name(values)))


#: MySQL's string escapes (``mysql_real_escape_string``, PyMySQL's ``escape_string``), the
#: backslash first so that the backslashes the others add are not doubled.
_ESCAPES = (
    ("\\", "\\\\"),
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\x1a", "\\Z"),
    ("'", "\\'"),
    ('"', '\\"'),
)
_SERVER_STATUS_NO_BACKSLASH_ESCAPES = 512


def _backslash_escaped(value: str) -> str:
    if len(value) <= _SHORT:
        known = _BACKSLASH_ESCAPED.get(value)
        if known is not None:
            return known
    # str.replace scans at memchr speed; str.translate (PyMySQL's way) looks every character
    # up: 800 us against 28 us for one DEVELOPMENT message's content here.
    text = value
    for char, escaped in _ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return _remember(_BACKSLASH_ESCAPED, value, "'" + text + "'")


def _quote_doubled(value: str) -> str:
    if len(value) <= _SHORT:
        known = _QUOTE_DOUBLED.get(value)
        if known is not None:
            return known
    return _remember(_QUOTE_DOUBLED, value, "'" + value.replace("'", "''") + "'")


_SHORT = 48
"""Texts up to this length have their literal remembered: a message's rows repeat a few
short ones (the server id in three rows, each content row's data type, statuses, connector
names), and one lookup costs a seventh of the seven scans."""
_BACKSLASH_ESCAPED: dict[str, str] = {}
_QUOTE_DOUBLED: dict[str, str] = {}
_REMEMBERED = 4096
"""At most this many literals per escaping mode; the memory is emptied when full, so texts
that never repeat (control ids, say) cannot grow it."""


def _remember(memory: dict[str, str], value: str, literal: str) -> str:
    if len(value) <= _SHORT:
        if len(memory) >= _REMEMBERED:
            memory.clear()
        memory[value] = literal
    return literal


@dataclass(frozen=True)
class Field:
    """One parameter of a compiled statement: its name, the conversion its column type
    applies (SQLAlchemy's bind processor) and the Python type its values usually have
    (``int``, ``str``, ``datetime``, or None), which is tried first when writing them."""

    name: str
    processor: Callable[[Any], Any] | None
    usual: type | None


RowWriter = Callable[[Callable[[Any], str], dict[str, Any]], str]
"""``writer(value_literal, row)``: the row's text in the statement's template."""


def _row_writer(
    template: str, fields: Mapping[str, Field], text_literal: Callable[[str], str]
) -> RowWriter | None:
    """Generate the function writing a row into ``template`` (``%s`` or ``%(name)s``
    placeholders), as :func:`_renderer` after the statement's conversion would, but without
    a call per value: each value's usual type (and NULL) is written inline — ``str(v)`` for
    an int, ``text_literal(v)`` for text (a module-level escaping function, so the writer
    serves every connection in that mode), the timestamp format — and only other values go
    to the connection's ``value_literal``. Measured on MariaDB PRODUCTION batches: a
    message's values were ~55 calls of ``value_literal`` and ~40 % of the rendering time.

    None when the template is not one this can fill (then :func:`_renderer` does)."""
    positional, names = _positional(template)
    if "%%" in positional or "%(" in positional:
        return None
    if not names:  # format paramstyle: the fields in the compiled order
        names = tuple(fields)
        if positional.count("%s") != len(names):
            return None
    if any(name not in fields for name in names):
        return None
    namespace: dict[str, Any] = {
        "T": positional,
        "E": text_literal,
        "S": str,
        "D": datetime.datetime,
        "type": type,
    }
    lines = ["def write(L, row):"]
    parts = []
    for index, name in enumerate(names):
        field = fields[name]
        value = f"row[{name!r}]"
        if field.processor is not None:
            namespace[f"P{index}"] = field.processor
            value = f"P{index}({value})"
        lines.append(f"    v{index} = {value}")
        v = f"v{index}"
        if field.usual is int:
            fast = f"S({v}) if type({v}) is int else "
        elif field.usual is str:
            fast = f"E({v}) if type({v}) is str else "
        elif field.usual is datetime.datetime:
            fast = (
                f"\"'\" + {v}.isoformat(' ') + \"'\" if type({v}) is D and {v}.tzinfo is None else "
            )
        else:
            fast = ""
        parts.append(f"'NULL' if {v} is None else {fast}L({v})")
    lines.append("    return T % (" + ", ".join(parts) + ",)")
    exec(compile("\n".join(lines), f"<row writer {template[:40]!r}>", "exec"), namespace)
    writer: RowWriter = namespace["write"]
    return writer


def _usual_type(bind: Any, processor: Callable[[Any], Any] | None) -> type | None:
    """The Python type a parameter's values usually have once converted, when it is plain
    (a hint: the writer checks each value's type before taking the short way)."""
    try:
        python_type = bind.type.python_type
    except NotImplementedError:
        return None
    if processor is not None:
        # Converted to whatever the dialect wants: booleans to 1 and 0 on MariaDB/MySQL.
        if python_type is not bool:
            return None
        try:
            python_type = type(processor(True))
        except Exception:
            return None
    return python_type if python_type in (int, str, datetime.datetime) else None


LiteralKit = tuple[Callable[[str], str], Callable[[Any], str]] | tuple[()]


def literal_kit(cursor: Any) -> LiteralKit:
    """The session's text escaping (a module-level function) and the connection's
    ``value_literal``, as the generated row writers take them; empty when text is escaped
    by the driver itself (mysqlclient with a character set other than UTF-8) or the driver
    is not known."""
    value_literal = _literal_function(cursor)
    if value_literal is None:
        return ()
    escape = getattr(value_literal, "escape", None)
    if escape not in (_backslash_escaped, _quote_doubled):
        return ()
    return escape, value_literal


def _literal_function(cursor: Any) -> Callable[[Any], str] | None:
    """One value as SQL text exactly as the driver (mysqlclient or PyMySQL) writes it, or
    None for another driver.

    Text is escaped as the session's mode asks (``NO_BACKSLASH_ESCAPES`` or not), read from
    the driver at each call; numbers, booleans and naive timestamps are written as both
    drivers write them; anything else goes to the driver. With mysqlclient and a character
    set other than UTF-8, text goes to libmariadb, whose escaping depends on the set."""
    conn = cursor.connection
    module = type(conn).__module__
    if module.startswith("MySQLdb"):
        encoding = conn.encoding
        driver_literal = conn.literal
        string_literal = conn.string_literal

        def other(value: Any) -> str:
            return str(driver_literal(value).decode(encoding))

        if encoding in ("utf8", "utf-8"):
            quote_only = string_literal(b"'") == b"''''"
            escape = _quote_doubled if quote_only else _backslash_escaped
        else:

            def escape(value: str) -> str:
                return str(string_literal(value.encode(encoding)).decode(encoding))

    elif module.startswith("pymysql"):
        other = conn.escape
        quote_only = bool(conn.server_status & _SERVER_STATUS_NO_BACKSLASH_ESCAPES)
        escape = _quote_doubled if quote_only else _backslash_escaped
    else:
        return None
    datetime_type = datetime.datetime

    def value_literal(value: Any) -> str:
        kind = type(value)
        if kind is str:
            return escape(value)
        if value is None:
            return "NULL"
        if kind is int:
            return str(value)
        if kind is bool:
            return "1" if value else "0"
        if kind is datetime_type and value.tzinfo is None:
            # Both drivers: 'YYYY-MM-DD HH:MM:SS', and '.ffffff' when there are microseconds.
            return f"'{value.isoformat(' ')}'"
        return other(value)

    value_literal.escape = escape  # type: ignore[attr-defined]
    return value_literal


@dataclass(frozen=True)
class LibpqForm:
    """A pyformat statement (``%(name)s``) as a libpq prepared statement: ``$1...`` in the
    SQL, the parameter names in ``$`` order, and a name for ``PREPARE`` that is the same for
    the same SQL."""

    sql: bytes
    names: tuple[str, ...]
    key: str

    @classmethod
    def of(cls, sql: str) -> LibpqForm | None:
        if "%%" in sql:
            return None
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        body = _PYFORMAT.sub(number, sql)
        if "%" in body:
            return None
        key = hashlib.sha1(body.encode()).hexdigest()[:20]
        return cls(body.encode(), tuple(names), key)


_PYFORMAT = re.compile(r"%\((\w+)\)s")


def libpq_parameters(
    form: LibpqForm, values: Mapping[str, Any], encoding: str
) -> list[bytes | None]:
    """A converted row as libpq text parameters. Raises ``TypeError`` for a value it has no
    text form for (the caller then takes psycopg's path) and psycopg's ``DataError`` for a NUL
    character, as psycopg does (libpq would cut the text at it)."""
    out: list[bytes | None] = []
    for name in form.names:
        value = values[name]
        if value is None:
            out.append(None)
            continue
        kind = type(value)
        if kind is str:
            if "\x00" in value:
                import psycopg

                raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            out.append(value.encode(encoding))
        elif kind is bool:
            out.append(b"t" if value else b"f")
        elif kind is int:
            out.append(str(value).encode())
        elif kind is datetime.datetime:
            out.append(value.isoformat().encode())
        else:
            raise TypeError(f"no libpq text form for {kind.__name__}")
    return out


class _Generation:
    """Which of our prepared statements exist on one connection. After a failed pipeline it
    is not known which ``PREPARE`` went through, so the next batch uses fresh names."""

    def __init__(self) -> None:
        self.number = 0
        self.prepared: set[str] = set()

    def reset(self) -> None:
        self.number += 1
        self.prepared.clear()


_GENERATIONS: weakref.WeakKeyDictionary[Any, _Generation] = weakref.WeakKeyDictionary()


def run_libpq_pipeline(
    conn: Connection,
    steps: Sequence[tuple[LibpqForm, list[list[bytes | None]]]],
    *,
    commit: bool,
) -> None:
    """PostgreSQL: a batch's statements, and its ``COMMIT`` when ``commit``, in one libpq
    pipeline (one round trip), each statement prepared once per connection; blocking (a
    worker thread). :func:`run_libpq_pipeline_async` is the same from the event loop.

    Why not psycopg's pipeline: it runs several Python generators per row sent (measured:
    0.32 ms of CPU for a batch of 26 rows against 0.066 ms through libpq directly, and the
    COMMIT costs a second round trip there). The connection stays non-blocking and the wait
    is ``select``, so the GIL is free while the server works. Errors are raised as psycopg's
    (by SQLSTATE) wrapped as SQLAlchemy's; a connection left in an unknown state is
    invalidated."""
    import select

    pipeline = _libpq_pipeline(conn, steps, commit)
    try:
        for want, fd in pipeline:
            if want is _WRITE:
                select.select([fd], [fd], [])
            else:
                select.select([fd], [], [])
    finally:
        pipeline.close()


async def run_libpq_pipeline_async(
    conn: Connection,
    steps: Sequence[tuple[LibpqForm, list[list[bytes | None]]]],
    *,
    commit: bool,
) -> None:
    """:func:`run_libpq_pipeline` from the event loop: the socket is awaited with trio
    instead of a worker thread's ``select``, so a batch costs no thread hand-off and the
    GIL is not passed back and forth at each of libpq's waits (as for MariaDB,
    :mod:`pannier.store.mysql_wire`). Cancelling it leaves the connection invalidated."""
    import trio

    pipeline = _libpq_pipeline(conn, steps, commit)
    try:
        for want, fd in pipeline:
            if want is _WRITE:
                # libpq may need to read before it can write on (the server blocked
                # sending results): wait a little, then let it read what came, and on.
                with trio.move_on_after(0.05):
                    await trio.lowlevel.wait_writable(fd)
            else:
                await trio.lowlevel.wait_readable(fd)
    finally:
        pipeline.close()  # unfinished (cancelled): the connection is invalidated


_READ = "read"
_WRITE = "read or write"


def _libpq_pipeline(
    conn: Connection,
    steps: Sequence[tuple[LibpqForm, list[list[bytes | None]]]],
    commit: bool,
) -> Generator[tuple[str, int], None, None]:
    """The pipeline itself, yielding ``(_READ or _WRITE, fd)`` wherever it must wait for
    the socket: the caller waits as it can (a thread's ``select``, trio) and resumes it."""
    import psycopg
    from psycopg import pq

    driver = conn.connection.driver_connection
    pg = driver.pgconn  # type: ignore[union-attr]
    generation = _GENERATIONS.get(driver)
    if generation is None:
        generation = _GENERATIONS[driver] = _Generation()
    error: psycopg.Error | None = None
    clean = False
    try:
        pg.enter_pipeline_mode()
        if pg.transaction_status == pq.TransactionStatus.IDLE:
            pg.send_query_params(b"BEGIN", None)
        for form, rows in steps:
            name = f"pannier_{generation.number}_{form.key}".encode()
            if form.key not in generation.prepared:
                pg.send_prepare(name, form.sql)
                generation.prepared.add(form.key)
            for params in rows:
                pg.send_query_prepared(name, params)
        if commit:
            pg.send_query_params(b"COMMIT", None)
        pg.pipeline_sync()
        fd = pg.socket
        while pg.flush():
            yield _WRITE, fd
            pg.consume_input()
        while True:
            while pg.is_busy():
                yield _READ, fd
                pg.consume_input()
            result = pg.get_result()
            if result is None:
                continue
            status = result.status
            if status == pq.ExecStatus.PIPELINE_SYNC:
                break
            if status == pq.ExecStatus.FATAL_ERROR and error is None:
                sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
                message = (result.error_message or b"").decode(errors="replace").strip()
                kind = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.Error
                error = kind(message)
        pg.exit_pipeline_mode()
        clean = True
    except psycopg.Error as exc:
        error = exc
    finally:
        if not clean:
            conn.invalidate()  # mid-pipeline (or abandoned): nothing more can be sent on it
    if error is not None:
        generation.reset()
        raise wrap_driver_error(conn, None, "pipelined batch", error) from error


@functools.lru_cache(maxsize=1024)
def _positional(template: str) -> tuple[str, tuple[str, ...]]:
    """``template`` with its named placeholders made ``%s``, and their names in order
    (parsed once per statement, not per batch)."""
    return _PYFORMAT.sub("%s", template), tuple(_PYFORMAT.findall(template))


@functools.lru_cache(maxsize=1024)
def _split_values(sql: str) -> tuple[str, str | None]:
    """``INSERT ... VALUES (...)`` as ``("INSERT ... VALUES ", "(...)")``; other statements
    as ``(sql, None)``."""
    head, marker, values = sql.rpartition(" VALUES ")
    if not sql.startswith("INSERT ") or not marker or not values.startswith("("):
        return sql, None
    return head + marker, values


def run_multi_statement(conn: Connection, cursor: Any, statements: list[str]) -> None:
    """Send ``statements`` (SQL texts with their values inlined) in one round trip and read
    every result, so an error in any of them is raised here (as SQLAlchemy's)."""
    sql = ";\n".join(statements)
    try:
        cursor.execute(sql)
        while cursor.nextset():
            pass
    except conn.dialect.loaded_dbapi.Error as exc:
        raise wrap_driver_error(conn, cursor, sql[:1000], exc) from exc


def wrap_driver_error(conn: Connection, cursor: Any, sql: str, exc: Any) -> sa.exc.StatementError:
    """``exc`` as SQLAlchemy would have raised it; a lost connection is invalidated, as
    SQLAlchemy does, so it is never handed out again."""
    dialect = conn.dialect
    try:
        lost = bool(dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor))
    except Exception:  # the connection is too broken to ask: treat it as lost
        lost = True
    if lost and not conn.invalidated:
        conn.invalidate(exc)
    wrapped: sa.exc.StatementError = sa.exc.DBAPIError.instance(
        sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost
    )
    return wrapped


def compile_for_driver(
    statement: Any, keys: tuple[str, ...], dialect: Dialect
) -> DriverStatement | None:
    """Compile ``statement`` for rows with exactly ``keys``; ``None`` if it needs SQLAlchemy.

    Keys starting with ``b_`` are WHERE-clause ``bindparam`` names; the others are the
    columns inserted or set. Literal values in the statement (``.values(PROCESSED=True)``)
    are bound as SQLAlchemy binds them, and every value goes through its column type's bind
    processor for this dialect (SQLite's DATETIME to text, for one)."""
    columns = [key for key in keys if not key.startswith("b_")]
    compiled = statement.compile(dialect=dialect, column_keys=columns)
    sql = compiled.string
    if "POSTCOMPILE" in sql or getattr(compiled, "escaped_bind_names", None):
        return None
    binds = compiled.binds
    names: list[str] = list(compiled.positiontup) if compiled.positional else list(binds)
    constants = {name: binds[name].effective_value for name in names if name not in keys}
    if not set(keys) <= set(names):  # a key the statement does not bind: not ours to drop
        return None
    by_name = {name: _bind_processor(binds[name], dialect) for name in names}
    processors = [
        (index, processor)
        for index, name in enumerate(names)
        if (processor := by_name[name]) is not None
    ]
    for name, value in constants.items():
        processor = by_name[name]
        constants[name] = processor(value) if processor is not None else value
    convert = _converter(names, constants, processors, compiled.positional)
    libpq = None
    if dialect.name == "postgresql" and dialect.paramstyle == "pyformat":
        libpq = LibpqForm.of(sql)
    fields = None
    if not constants and len(by_name) == len(names):  # each parameter bound once
        fields = [
            Field(name, by_name[name], _usual_type(binds[name], by_name[name])) for name in names
        ]
    return DriverStatement(sql, convert, libpq, fields)


def _bind_processor(bind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion SQLAlchemy applies to this parameter's values for ``dialect``."""
    processor: Callable[[Any], Any] | None = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _converter(
    names: list[str],
    constants: dict[str, Any],
    processors: list[tuple[int, Callable[[Any], Any]]],
    positional: bool,
) -> Callable[[dict[str, Any]], Params]:
    if constants:
        # Rare (a literal in the statement): merge and take the general path.
        inner = _converter(names, {}, processors, positional)
        return lambda row: inner({**constants, **row})
    if len(names) == 1:
        only = names[0]
        get: Callable[[dict[str, Any]], tuple[Any, ...]] = lambda row: (row[only],)  # noqa: E731
    else:
        get = operator.itemgetter(*names)
    if positional:
        if not processors:
            return get

        def positional_values(row: dict[str, Any]) -> tuple[Any, ...]:
            values = list(get(row))
            for index, processor in processors:
                values[index] = processor(values[index])
            return tuple(values)

        return positional_values
    if not processors:
        return lambda row: row  # the row's keys are the statement's parameter names
    named_processors = [(names[index], processor) for index, processor in processors]

    def named_values(row: dict[str, Any]) -> dict[str, Any]:
        values = dict(row)
        for name, processor in named_processors:
            values[name] = processor(values[name])
        return values

    return named_values


class DriverStatements:
    """Per-store cache of :class:`DriverStatement` by statement and row keys. Statements are
    held weakly: an undeployed channel's statements leave the cache with it."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._cache: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], DriverStatement | None]]
        self._cache = weakref.WeakKeyDictionary()

    def get(self, statement: Any, keys: tuple[str, ...]) -> DriverStatement | None:
        by_keys = self._cache.get(statement)
        if by_keys is None:
            by_keys = self._cache.setdefault(statement, {})
        if keys not in by_keys:
            by_keys[keys] = compile_for_driver(statement, keys, self._dialect)
        return by_keys[keys]
