"""Statements the store runs on the DB-API cursor must write exactly what SQLAlchemy would:
the same values read back through SQLAlchemy, the same exceptions for retry logic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from pannier.store.driver import DriverStatements, compile_for_driver

metadata = sa.MetaData()
table = sa.Table(
    "driver_check",
    metadata,
    sa.Column("ID", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("WHEN_SEEN", sa.DateTime(timezone=True)),
    sa.Column("FLAG", sa.Boolean),
    sa.Column("NAME", sa.Text),
)


@pytest.fixture
def engine(db_url: str):
    engine = sa.create_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def when(n: int, dialect: str) -> datetime:
    # MariaDB's DATETIME keeps whole seconds (as Mirth's schema declares it there).
    micro = 0 if dialect in ("mysql", "mariadb") else 123456
    value = datetime(2026, 11, 23, 10, n, 5, micro, tzinfo=UTC)
    return value if dialect == "postgresql" else value.replace(tzinfo=None)


def test_rows_read_back_as_sqlalchemy_wrote_them(engine: sa.Engine) -> None:
    dialect = engine.dialect
    insert = sa.insert(table)
    keys = ("ID", "WHEN_SEEN", "FLAG", "NAME")
    compiled = compile_for_driver(insert, keys, dialect)
    assert compiled is not None
    rows = [
        {"ID": n, "WHEN_SEEN": when(n, dialect.name), "FLAG": n % 2 == 0, "NAME": f"<é&{n}>"}
        for n in range(1, 4)
    ]
    mark = sa.update(table).where(table.c.ID == sa.bindparam("b_id")).values(FLAG=True)
    rename = sa.update(table).where(table.c.ID == sa.bindparam("b_id"))
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        compiled.run(conn, cursor, rows[:1])  # one row: execute
        compiled.run(conn, cursor, rows[1:])  # several: executemany
        marked = compile_for_driver(mark, ("b_id",), dialect)
        renamed = compile_for_driver(rename, ("b_id", "NAME"), dialect)
        assert marked is not None and renamed is not None
        marked.run(conn, cursor, [{"b_id": 1}])  # the literal TRUE in the statement is bound
        renamed.run(conn, cursor, [{"b_id": 2, "NAME": "two"}, {"b_id": 3, "NAME": None}])
        cursor.close()
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table).order_by(table.c.ID)).all()
    assert [tuple(row) for row in stored] == [
        (1, when(1, dialect.name), True, "<é&1>"),
        (2, when(2, dialect.name), True, "two"),
        (3, when(3, dialect.name), False, None),
    ]


def test_driver_errors_are_raised_as_sqlalchemy_errors(engine: sa.Engine) -> None:
    compiled = compile_for_driver(sa.insert(table), ("ID", "NAME"), engine.dialect)
    assert compiled is not None
    with engine.connect() as conn:
        conn.begin()
        cursor = conn.connection.cursor()
        compiled.run(conn, cursor, [{"ID": 7, "NAME": "first"}])
        with pytest.raises(sa.exc.IntegrityError):
            compiled.run(conn, cursor, [{"ID": 7, "NAME": "again"}])
        conn.rollback()


def test_statements_it_cannot_vouch_for_are_left_to_sqlalchemy(engine: sa.Engine) -> None:
    expanding = sa.delete(table).where(table.c.ID.in_(sa.bindparam("b_ids", expanding=True)))
    assert compile_for_driver(expanding, ("b_ids",), engine.dialect) is None
    # Keys the statement does not bind are refused rather than silently dropped.
    assert compile_for_driver(sa.insert(table), ("ID", "NOT_A_COLUMN"), engine.dialect) is None


def test_cache_compiles_once_per_statement_and_keys(engine: sa.Engine) -> None:
    statements = DriverStatements(engine.dialect)
    insert = sa.insert(table)
    first = statements.get(insert, ("ID", "NAME"))
    assert statements.get(insert, ("ID", "NAME")) is first
    assert statements.get(insert, ("ID", "FLAG")) is not first


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
def test_mariadb_multi_statement_batches_keep_every_value_intact(
    mysql_url: str, driver: str
) -> None:
    """One round trip for a batch: values are inlined by the driver's own escaping, so quotes,
    backslashes, ``%`` and statement separators in content are stored as sent, and an error
    in any statement of the text is raised."""
    if driver == "mysqldb":
        pytest.importorskip(
            "MySQLdb", reason="mysqlclient (pip install 'pannier[mysqlclient]') not installed"
        )
    from pannier.store.driver import run_multi_statement
    from pannier.store.store import _create_engine

    url = mysql_url.replace("mysql+pymysql://", f"mysql+{driver}://")
    engine = _create_engine(url, 2)
    metadata.create_all(engine)
    nasty = ["it's", 'say "hi"', "back\\slash", "100%s %(x)s", "'; DROP TABLE driver_check; --"]
    insert = compile_for_driver(sa.insert(table), ("ID", "NAME"), engine.dialect)
    rename = compile_for_driver(
        sa.update(table).where(table.c.ID == sa.bindparam("b_id")), ("b_id", "NAME"), engine.dialect
    )
    assert insert is not None and rename is not None
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        statements = insert.literal_sql(
            cursor, [{"ID": n, "NAME": text} for n, text in enumerate(nasty)]
        )
        statements += rename.literal_sql(cursor, [{"b_id": 0, "NAME": nasty[0] + "!"}])
        assert len(statements) == 2  # one multi-row INSERT, one UPDATE
        run_multi_statement(conn, cursor, statements)
        duplicate = insert.literal_sql(cursor, [{"ID": 99, "NAME": "x"}, {"ID": 1, "NAME": "dup"}])
        with pytest.raises(sa.exc.IntegrityError):
            run_multi_statement(
                conn, cursor, rename.literal_sql(cursor, [{"b_id": 2, "NAME": "y"}]) + duplicate
            )
        cursor.close()
        conn.rollback()
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        run_multi_statement(conn, cursor, statements)
        cursor.close()
    # Large contents: the INSERT is cut so no text grows past ~max_bytes (TEXT holds 64 KiB).
    big = [{"ID": 100 + n, "NAME": str(n) * 30_000} for n in range(6)]
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        inserts = insert.literal_sql(cursor, big, max_bytes=70_000)
        assert len(inserts) == 3 and max(len(sql) for sql in inserts) < 70_000
        run_multi_statement(conn, cursor, inserts)
        cursor.close()
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(table.c.ID, table.c.NAME)).all())
    engine.dispose()
    assert stored == {
        0: nasty[0] + "!",
        **{n: text for n, text in enumerate(nasty) if n},
        **{row["ID"]: row["NAME"] for row in big},
    }


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_mariadb_values_are_inlined_exactly_as_the_driver_would(
    mysql_url: str, driver: str, sql_mode: str
) -> None:
    """The store writes values into the SQL text itself (one round trip per batch) without
    going through ``cursor.mogrify`` value by value; the text must be mogrify's, character
    for character, whatever the value and whatever the session's escaping mode."""
    if driver == "mysqldb":
        pytest.importorskip(
            "MySQLdb", reason="mysqlclient (pip install 'pannier[mysqlclient]') not installed"
        )
    from pannier.store.driver import _renderer

    url = mysql_url.replace("mysql+pymysql://", f"mysql+{driver}://")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    values = [
        None,
        True,
        False,
        0,
        -12345678901234,
        "plain",
        'it\'s "quoted" \\ back\\slash',
        "NUL\x00 and \x1a and \r\n",
        "é ü 漢字 🏥",
        "100%s %(x)s %%",
        datetime(2026, 12, 6, 8, 30, 5),
        datetime(2026, 12, 6, 8, 30, 5, 123),
        datetime(999, 1, 2, 3, 4, 5, 600000),
        "MSH|^~\\&|A\rPID|1||x\n" * 40,
        2.5,
    ]
    template = "(" + ", ".join(["%s"] * len(values)) + ")"
    update = "UPDATE t SET A=%s, B=%s WHERE ID = %s"
    try:
        with engine.connect() as conn:
            if sql_mode:
                conn.exec_driver_sql(f"SET SESSION sql_mode = '{sql_mode}'")
            cursor = conn.connection.cursor()
            expected = cursor.mogrify(template, values)
            assert _renderer(cursor, template)(values) == expected
            assert _renderer(cursor, template)(values) == expected  # short texts remembered
            assert _renderer(cursor, update)(values[5:8]) == cursor.mogrify(update, values[5:8])
            # Named placeholders (PyMySQL's paramstyle, as the store compiles for it).
            row = {f"v{n}": value for n, value in enumerate(values)}
            named = "(" + ", ".join(f"%({key})s" for key in reversed(row)) + ")"
            assert _renderer(cursor, named)(row) == cursor.mogrify(named, row)
            one = "UPDATE t SET A=%(v6)s"
            assert _renderer(cursor, one)(row) == cursor.mogrify(one, row)
            cursor.close()
    finally:
        engine.dispose()
    if sql_mode:
        assert "\\'" not in expected and "''" in expected  # the mode was in force
    else:
        assert "\\'" in expected


def test_postgresql_batches_through_libpq_store_what_psycopg_would(postgres_url: str) -> None:
    """PostgreSQL batches go to libpq directly (prepared statements, text parameters, the
    COMMIT in the same round trip). Every kind of value comes back as written; a NUL is
    refused as psycopg refuses it; a constraint violation is SQLAlchemy's IntegrityError and
    the connection, its transaction rolled back, runs the next batch (fresh statement names,
    since which PREPARE went through is not known)."""
    from pannier.store.driver import libpq_parameters, run_libpq_pipeline

    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    insert = compile_for_driver(
        sa.insert(table), ("ID", "WHEN_SEEN", "FLAG", "NAME"), engine.dialect
    )
    rename = compile_for_driver(
        sa.update(table).where(table.c.ID == sa.bindparam("b_id")), ("b_id", "NAME"), engine.dialect
    )
    assert insert is not None and insert.libpq is not None
    assert rename is not None and rename.libpq is not None
    names = [None, "", 'it\'s "q" \\ back', "é 漢字 🏥", "%s %(x)s %%", "x" * 100_000]
    rows = [
        {"ID": 2**40 + n, "WHEN_SEEN": when(n, "postgresql"), "FLAG": n % 2 == 0, "NAME": name}
        for n, name in enumerate(names)
    ]

    def step(statement, rows):
        return (
            statement.libpq,
            [libpq_parameters(statement.libpq, v, "utf-8") for v in statement.parameters(rows)],
        )

    with engine.connect() as conn:
        with conn.begin():
            run_libpq_pipeline(
                conn,
                [step(insert, rows), step(rename, [{"b_id": 2**40, "NAME": "renamed"}])],
                commit=True,
            )
        # committed inside the pipeline: another connection sees it
        with engine.connect() as other:
            stored = {r.ID: tuple(r)[1:] for r in other.execute(sa.select(table))}
        assert stored[2**40] == (when(0, "postgresql"), True, "renamed")
        assert {stored[2**40 + n][2] for n in range(1, len(names))} == set(names[1:])
        assert all(stored[2**40 + n][0] == when(n, "postgresql") for n in range(len(names)))

        with pytest.raises(Exception, match="NUL"):
            step(insert, [{"ID": 1, "WHEN_SEEN": None, "FLAG": None, "NAME": "a\x00b"}])

    with engine.connect() as conn:  # a fresh connection: nothing prepared on it yet
        duplicate = [{"ID": 7, "WHEN_SEEN": None, "FLAG": None, "NAME": "a"}] * 2
        seven = [{"b_id": 7, "NAME": "seven"}]
        # The second row fails, so the pipeline skips what follows: the PREPARE of the
        # update never runs. The next batch must prepare it again, not assume it exists.
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            run_libpq_pipeline(conn, [step(insert, duplicate), step(rename, seven)], commit=True)
        with conn.begin():
            run_libpq_pipeline(
                conn, [step(insert, duplicate[:1]), step(rename, seven)], commit=False
            )
        assert conn.execute(sa.select(table.c.NAME).where(table.c.ID == 7)).scalar() == "seven"
    engine.dispose()


def test_remembered_literals_stay_few_and_right() -> None:
    """Short texts' literals are remembered (they repeat in every message); texts that never
    repeat cannot grow that memory past its bound, and long texts are not kept."""
    from pannier.store import driver

    for n in range(driver._REMEMBERED + 500):
        assert driver._backslash_escaped(f"id-{n}'") == f"'id-{n}\\''"
        assert driver._quote_doubled(f"id-{n}'") == f"'id-{n}'''"
    assert len(driver._BACKSLASH_ESCAPED) <= driver._REMEMBERED
    assert len(driver._QUOTE_DOUBLED) <= driver._REMEMBERED
    assert driver._backslash_escaped("id-3'") == "'id-3\\''"  # again, from memory or not
    long = "x" * (driver._SHORT + 1)
    driver._backslash_escaped(long)
    assert long not in driver._BACKSLASH_ESCAPED


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_mariadb_literal_statements_are_the_drivers_text_row_for_row(
    mysql_url: str, driver: str, sql_mode: str
) -> None:
    """What ``literal_sql`` writes for a batch is, row for row, what the driver writes for
    the statement with SQLAlchemy's converted parameters (booleans, timestamps, NULLs, text
    to escape), for inserts, updates by key and a statement holding a literal value — also
    for values of another type than their column's (written by the generated row writer's
    fallback), in either escaping mode."""
    if driver == "mysqldb":
        pytest.importorskip(
            "MySQLdb", reason="mysqlclient (pip install 'pannier[mysqlclient]') not installed"
        )
    url = mysql_url.replace("mysql+pymysql://", f"mysql+{driver}://")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    seen = datetime(2026, 12, 6, 8, 30, 5)
    rows = [
        {"ID": 1, "WHEN_SEEN": seen, "FLAG": True, "NAME": 'it\'s \\ "x"\r\n'},
        {"ID": 2, "WHEN_SEEN": None, "FLAG": False, "NAME": None},
        {"ID": 3, "WHEN_SEEN": seen, "FLAG": None, "NAME": "é 漢字"},
        {"ID": 4, "WHEN_SEEN": seen.replace(microsecond=7), "FLAG": 1, "NAME": "NUL\x00 \x1a %s"},
        {"ID": 2**40, "WHEN_SEEN": datetime(999, 1, 2), "FLAG": 0, "NAME": "100% %(x)s %%"},
        # Other types than the columns': the writer's fallback, as the driver writes them.
        {"ID": "5", "WHEN_SEEN": "2026-01-01", "FLAG": True, "NAME": 2.5},
        {"ID": True, "WHEN_SEEN": 17, "FLAG": False, "NAME": 12345678901234},
    ]
    statements = [
        (sa.insert(table), rows),
        (
            sa.update(table).where(table.c.ID == sa.bindparam("b_id")),
            [{"b_id": 1, "FLAG": False, "NAME": "renamed"}, {"b_id": 2, "FLAG": True, "NAME": "x"}],
        ),
        (
            sa.update(table).where(table.c.ID == sa.bindparam("b_id")).values(FLAG=True),
            [{"b_id": 3}],
        ),
    ]
    try:
        with engine.connect() as conn:
            if sql_mode:
                conn.exec_driver_sql(f"SET SESSION sql_mode = '{sql_mode}'")
            cursor = conn.connection.cursor()
            for statement, batch in statements:
                compiled = compile_for_driver(statement, tuple(batch[0]), conn.dialect)
                assert compiled is not None
                if statement is not statements[-1][0]:  # no literal value: written fused
                    assert compiled._fused_renderer(cursor) is not None
                expected = [
                    str(cursor.mogrify(compiled.sql, compiled._convert(row)))  # the driver's
                    for row in batch
                ]
                written = compiled.literal_sql(cursor, batch)
                if statement.is_insert:  # one multi-row INSERT: the same rows, joined
                    head = expected[0].split(" VALUES ")[0] + " VALUES "
                    rows_text = [text.split(" VALUES ", 1)[1] for text in expected]
                    assert written == [head + ", ".join(rows_text)]
                else:
                    assert written == expected
            cursor.close()
    finally:
        engine.dispose()
    assert ("''" if sql_mode else "\\'") in written[0] or not statement.is_insert
