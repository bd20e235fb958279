"""The Database Reader against real SQLite, MariaDB and PostgreSQL tables, driven in trio."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio
from pannier import ConnectorSetup, RawMessage
from pannier.properties import PropertyError
from pannier_database.reader import READER_DEFAULTS, DatabaseReader

TABLE = """CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    Name VARCHAR(100),
    note VARCHAR(200),
    processed INTEGER NOT NULL DEFAULT 0
)"""

SELECT = "SELECT id, Name, note FROM patients WHERE processed = 0 ORDER BY id"
# ${ID}: the row's "id" column; Mirth's row map is case-insensitive.
MARK = "UPDATE patients SET processed = 1 WHERE id = ${ID}"


def add(sql: Callable[..., Any], url: str, *rows: tuple[int, str | None, str | None]) -> None:
    for row_id, name, note in rows:
        sql(
            url,
            "INSERT INTO patients (id, Name, note) VALUES (:id, :name, :note)",
            {"id": row_id, "name": name, "note": note},
        )


def reader(make_setup: Callable[..., ConnectorSetup], url: str, **props: Any) -> DatabaseReader:
    return DatabaseReader(make_setup(READER_DEFAULTS, url=url, select=SELECT, **props))


async def poll(connector: DatabaseReader, dispatcher: Any) -> None:
    try:
        with trio.fail_after(10):
            await connector.poll(dispatcher)
    finally:
        connector.close()  # a pool per poll here; run() keeps one for the connector's life


@pytest.fixture
def table(db_url: str, sql: Callable[..., Any]) -> str:
    sql(db_url, TABLE)
    return db_url


async def test_each_row_is_one_message_in_mirths_xml(
    table: str, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    add(sql, table, (1, "Ann", "a <b> & c"), (2, "O'Brien", None))
    connector = reader(make_setup, table)
    await poll(connector, dispatcher)
    # Column names lower-cased ("Name" -> name), text escaped, NULL columns left out.
    assert dispatcher.contents == [
        "<result><id>1</id><name>Ann</name><note>a &lt;b&gt; &amp; c</note></result>",
        "<result><id>2</id><name>O'Brien</name></result>",
    ]
    assert all(m.source_map == {} for m in dispatcher.messages)


async def test_aggregate_results_make_one_message_and_mark_every_row(
    table: str, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    add(sql, table, (1, "Ann", "x"), (2, "Bob", "y"))
    connector = reader(make_setup, table, aggregateResults=True, updateMode=3, update=MARK)
    await poll(connector, dispatcher)
    assert dispatcher.contents == [
        "<results><result><id>1</id><name>Ann</name><note>x</note></result>"
        "<result><id>2</id><name>Bob</name><note>y</note></result></results>"
    ]
    assert sql(table, "SELECT id, processed FROM patients ORDER BY id") == [(1, 1), (2, 1)]
    await poll(connector, dispatcher)
    assert len(dispatcher.messages) == 1, "an empty poll sends no aggregate message"


async def test_update_after_each_message_means_no_row_is_read_twice(
    table: str, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    add(sql, table, (1, "Ann", "x"), (2, "Bob", "y"))
    connector = reader(make_setup, table, updateMode="3", update=MARK)
    await poll(connector, dispatcher)
    add(sql, table, (3, "Cy", "z"))
    await poll(connector, dispatcher)
    await poll(connector, dispatcher)
    ids = [m.split("<id>")[1].split("</id>")[0] for m in dispatcher.contents]
    assert ids == ["1", "2", "3"]
    assert sql(table, "SELECT COUNT(*) FROM patients WHERE processed = 0") == [(0,)]


async def test_update_once_runs_after_the_poll(
    table: str, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    add(sql, table, (1, "Ann", "x"), (2, "Bob", "y"))
    connector = reader(
        make_setup,
        table,
        updateMode=2,
        update="UPDATE patients SET processed = 1 WHERE processed = 0",
    )
    await poll(connector, dispatcher)
    await poll(connector, dispatcher)
    assert len(dispatcher.messages) == 2
    assert sql(table, "SELECT COUNT(*) FROM patients WHERE processed = 1") == [(2,)]


async def test_a_row_whose_dispatch_failed_is_not_marked_and_comes_back(
    table: str,
    sql: Callable[..., Any],
    make_setup: Any,
    recording_dispatcher: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add(sql, table, (1, "Ann", "x"), (2, "Bob", "y"))
    failures = [RuntimeError("store down")]

    def fail(raw: RawMessage) -> BaseException | None:
        return failures.pop() if "<id>1</id>" in str(raw.content) and failures else None

    dispatcher = recording_dispatcher(fail)
    connector = reader(make_setup, table, updateMode=3, update=MARK)
    with caplog.at_level(logging.ERROR, logger="pannier.database"):
        await poll(connector, dispatcher)
    assert [m[:20] for m in dispatcher.contents] == ["<result><id>2</id><n"]
    assert "will be read again" in caplog.text and "store down" in caplog.text
    await poll(connector, dispatcher)
    assert [m[:20] for m in dispatcher.contents] == ["<result><id>2</id><n", "<result><id>1</id><n"]
    assert sql(table, "SELECT COUNT(*) FROM patients WHERE processed = 0") == [(0,)]


async def test_should_poll_false_means_no_polling(
    tmp_path: Any, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    sql(url, TABLE)
    add(sql, url, (1, "Ann", "x"))
    allowed = [False]
    connector = DatabaseReader(
        make_setup(
            READER_DEFAULTS,
            should_poll=lambda: allowed[0],
            url=url,
            select=SELECT,
            pollingFrequency=10,
            pollOnStart=True,
        )
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, dispatcher)
        await trio.sleep(0.3)  # some thirty intervals
        assert connector.polls == 0 and dispatcher.messages == []
        allowed[0] = True
        with trio.fail_after(10):
            while not dispatcher.messages:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert connector.polls >= 1


async def test_select_values_are_bound_and_sql_colons_kept(
    tmp_path: Any, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    sql(url, TABLE)
    add(sql, url, (1, "database test", "10:30"), (2, "other", "10:30"))
    connector = DatabaseReader(
        make_setup(
            READER_DEFAULTS,
            url=url,
            select="SELECT id FROM patients WHERE Name = ${channelName} AND note = '10:30'",
        )
    )
    await poll(connector, dispatcher)
    assert dispatcher.contents == ["<result><id>1</id></result>"]


async def test_a_failing_query_is_retried_logged_and_polling_goes_on(
    tmp_path: Any,
    sql: Callable[..., Any],
    make_setup: Any,
    dispatcher: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    connector = DatabaseReader(
        make_setup(READER_DEFAULTS, url=url, select=SELECT, retryCount=2, retryInterval=0)
    )
    with caplog.at_level(logging.WARNING, logger="pannier.database"):
        await poll(connector, dispatcher)
    assert dispatcher.messages == []
    assert caplog.text.count("retry") == 2
    assert "no such table: patients" in caplog.text
    sql(url, TABLE)
    add(sql, url, (1, "Ann", "x"))
    await poll(connector, dispatcher)
    assert len(dispatcher.messages) == 1


async def test_columns_differing_only_in_case_are_an_error(
    tmp_path: Any,
    sql: Callable[..., Any],
    make_setup: Any,
    dispatcher: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    sql(url, TABLE)
    add(sql, url, (1, "Ann", "x"))
    connector = DatabaseReader(
        make_setup(READER_DEFAULTS, url=url, select='SELECT id, Name AS "ID" FROM patients')
    )
    with caplog.at_level(logging.ERROR, logger="pannier.database"):
        await poll(connector, dispatcher)
    assert dispatcher.messages == []
    assert "'id' more than once" in caplog.text


async def test_column_labels_become_valid_element_names(
    tmp_path: Any, sql: Callable[..., Any], make_setup: Any, dispatcher: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    sql(url, TABLE)
    add(sql, url, (1, "Ann", "x"))
    connector = DatabaseReader(
        make_setup(
            READER_DEFAULTS,
            url=url,
            select='SELECT Name AS "First Name", id AS "1st" FROM patients',
        )
    )
    await poll(connector, dispatcher)
    assert dispatcher.contents == ["<result><first_name>Ann</first_name><_st>1</_st></result>"]


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"select": ""}, "select is required"),
        ({"useScript": True}, "useScript = true"),
        ({"updateMode": 3}, "needs an update statement"),
        ({"updateMode": 7, "update": "x"}, "updateMode = 7"),
        ({"url": ""}, "url is required"),
        ({"url": "jdbc:oracle:thin:@h:1521:x"}, "cannot be mapped"),
        ({"url": "nosuchdb://h/x"}, "no such database dialect"),
        ({"encoding": "klingon"}, "unknown charset"),
        ({"pollingFrequency": 0}, "'pollingFrequency'"),
    ],
)
def test_bad_properties_fail_at_deploy_naming_the_key(
    make_setup: Any, props: dict[str, Any], expected: str
) -> None:
    base = {"url": "sqlite://", "select": SELECT}
    with pytest.raises(PropertyError, match=expected):
        DatabaseReader(make_setup(READER_DEFAULTS, **{**base, **props}))
