"""The Database Writer against real SQLite, MariaDB and PostgreSQL tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from pannier import ConnectorSetup, SendRequest, Status
from pannier.properties import PropertyError
from pannier_database.writer import WRITER_DEFAULTS, DatabaseWriter

TABLE = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(500), mrn VARCHAR(20))"
INSERT = (
    "INSERT INTO notes (id, body, mrn) "
    "VALUES (${message.messageId}, ${message.encodedData}, ${mrn})"
)
NASTY = "O'Brien said \"hi\"; '); DROP TABLE notes; -- 50% \\ done :x"


def request(encoded: str, message_id: int = 7, **maps: Any) -> SendRequest:
    return SendRequest(
        channel_id="c0ffee00-0000-0000-0000-000000000001",
        message_id=message_id,
        metadata_id=1,
        encoded=encoded,
        properties={},
        maps=maps,
    )


WriterFactory = Callable[..., Any]


@pytest.fixture
async def writer(make_setup: Callable[..., ConnectorSetup]) -> AsyncIterator[WriterFactory]:
    """``await writer(url=..., query=...)``: a started Database Writer, stopped afterwards."""
    started: list[DatabaseWriter] = []

    async def make(**props: Any) -> DatabaseWriter:
        connector = DatabaseWriter(make_setup(WRITER_DEFAULTS, **props))
        await connector.start()
        started.append(connector)
        return connector

    yield make
    for connector in started:
        await connector.stop()


async def send(connector: DatabaseWriter, req: SendRequest) -> Any:
    with trio.fail_after(30):
        return await connector.send(req)


async def test_values_are_bound_never_pasted_into_the_sql(
    db_url: str, sql: Callable[..., Any], writer: WriterFactory
) -> None:
    sql(db_url, TABLE)
    connector = await writer(url=db_url, query=INSERT)
    response = await send(connector, request(NASTY, mrn="MRN'1"))
    assert response.status == Status.SENT, response.error
    assert response.status_message == "Database write success, 1 rows updated"
    response = await send(connector, request("second", message_id=8, mrn="2"))
    assert response.status == Status.SENT, response.error
    assert sql(db_url, "SELECT id, body, mrn FROM notes ORDER BY id") == [
        (7, NASTY, "MRN'1"),
        (8, "second", "2"),
    ]


async def test_update_reports_the_rows_it_changed(
    db_url: str, sql: Callable[..., Any], writer: WriterFactory
) -> None:
    sql(db_url, TABLE)
    sql(
        db_url,
        "INSERT INTO notes (id, body, mrn) VALUES (1, 'a', 'X'), (2, 'b', 'X'), (3, 'c', 'Y')",
    )
    connector = await writer(url=db_url, query="UPDATE notes SET body = ${body} WHERE mrn = ${mrn}")
    response = await send(connector, request("", body="changed", mrn="X"))
    assert response.status == Status.SENT, response.error
    assert response.status_message == "Database write success, 2 rows updated"
    assert sql(db_url, "SELECT body FROM notes ORDER BY id") == [("changed",), ("changed",), ("c",)]


async def test_bad_sql_is_an_error_with_the_drivers_message(
    db_url: str, writer: WriterFactory
) -> None:
    connector = await writer(url=db_url, query="INSERT INTO missing_table (a) VALUES (${x})")
    response = await send(connector, request("m", x="1"))
    assert response.status == Status.ERROR
    assert response.error.startswith("Database Writer: failed to write to database: ")
    assert "missing_table" in response.error  # the driver's own words name the table
    assert response.status_message == "Error writing to database."


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@127.0.0.1:1/nowhere",
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "jdbc:mysql://127.0.0.1:1/nowhere",
    ],
)
async def test_an_unreachable_database_queues_the_message(url: str, writer: WriterFactory) -> None:
    connector = await writer(url=url, query=INSERT)
    response = await send(connector, request("m", mrn="1"))
    assert response.status == Status.QUEUED
    assert response.error.startswith("Database Writer: cannot connect to ")
    assert "127.0.0.1:1/nowhere" in response.error


async def test_a_database_that_comes_back_is_written_again(
    tmp_path: Any, sql: Callable[..., Any], writer: WriterFactory
) -> None:
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'data.db'}"
    connector = await writer(
        url=url, query="INSERT INTO notes (id, body) VALUES (${messageId}, 'x')"
    )
    first = await send(connector, request("m"))
    assert first.status == Status.QUEUED, "the folder is missing: sqlite cannot open the file"
    folder.mkdir()
    sql(url, TABLE)
    again = await send(connector, request("m"))
    assert again.status == Status.SENT, again.error
    assert sql(url, "SELECT id, body FROM notes") == [(7, "x")]


async def test_unknown_references_are_bound_as_written_and_sql_text_is_kept(
    tmp_path: Any, sql: Callable[..., Any], writer: WriterFactory
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    sql(url, TABLE)
    connector = await writer(
        url=url,
        query="INSERT INTO notes (id, body, mrn) VALUES (${messageId}, '10:30 50%', ${nope})",
    )
    response = await send(connector, request("m"))
    assert response.status == Status.SENT, response.error
    # Mirth's template replacer leaves an unknown reference as it is, and that text is bound.
    assert sql(url, "SELECT body, mrn FROM notes") == [("10:30 50%", "${nope}")]


async def test_relative_sqlite_paths_are_relative_to_the_config_folder(
    tmp_path: Any, sql: Callable[..., Any], writer: WriterFactory
) -> None:
    sql(f"sqlite:///{tmp_path / 'rel.db'}", TABLE)
    connector = await writer(url="jdbc:sqlite:rel.db", query=INSERT)
    response = await send(connector, request("m", mrn="1"))
    assert response.status == Status.SENT, response.error
    assert sql(f"sqlite:///{tmp_path / 'rel.db'}", "SELECT id FROM notes") == [(7,)]


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"query": ""}, "query is required"),
        ({"useScript": "true"}, "useScript = true"),
        ({"url": ""}, "url is required"),
        ({"url": "jdbc:sqlserver://h:1433;databaseName=x"}, "cannot be mapped"),
        ({"url": "jdbc:mysql://a,b:3306/x"}, "one host"),
        ({"connectTimeout": "soon"}, "'connectTimeout'"),
    ],
)
def test_bad_properties_fail_at_deploy_naming_the_key(
    make_setup: Any, props: dict[str, Any], expected: str
) -> None:
    base = {"url": "sqlite://", "query": INSERT}
    with pytest.raises(PropertyError, match=expected):
        DatabaseWriter(make_setup(WRITER_DEFAULTS, **{**base, **props}))


async def test_a_statement_returning_rows_is_a_success_without_a_count(
    tmp_path: Any, writer: WriterFactory
) -> None:
    connector = await writer(url=f"sqlite:///{tmp_path / 'data.db'}", query="SELECT ${mrn}")
    response = await send(connector, request("m", mrn="1"))
    assert (response.status, response.status_message) == (Status.SENT, "Database write success")
