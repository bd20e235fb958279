"""Database Reader -> Database Writer through a real in-process Engine: rows copied from one
table to another, on SQLite, MariaDB and PostgreSQL (the engine's own store is SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from pannier.config import load_config
from pannier.engine import Engine

CHANNEL = '''\
id = "3f9a6c1e-5b2d-4e8f-a1c7-9d0e2b4f6a81"
name = "Copy patients"

[properties]
messageStorageMode = "DEVELOPMENT"

[source]
transportName = "Database Reader"
inboundDataType = "XML"

[source.properties]
url = "{url}"
select = "SELECT id, name, note FROM patients WHERE processed = 0 ORDER BY id"
update = "UPDATE patients SET processed = 1 WHERE id = ${{id}}"
updateMode = 3
pollingFrequency = 50
pollOnStart = true

[[source.transformer.steps]]
kind = "python"
name = "columns to the channel map"
code = """
for column in ('id', 'name', 'note'):
    channel_map[column] = msg.findtext(column)
"""

[[destinations]]
metaDataId = 1
name = "Copy"
transportName = "Database Writer"

[destinations.properties]
url = "{url}"
query = """INSERT INTO copies (id, name, note, message_id)
VALUES (${{id}}, ${{name}}, ${{note}}, ${{message.messageId}})"""
'''

PEOPLE = [(1, "Ann", "first"), (2, "O'Brien", "it's; DROP TABLE copies; --"), (3, "Zoë", "x<y>")]


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(predicate):
            await trio.sleep(0.05)


async def test_rows_are_copied_from_one_table_to_another(
    nursery: trio.Nursery, tmp_path: Path, db_url: str, sql: Callable[..., Any]
) -> None:
    sql(
        db_url,
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, name VARCHAR(50), note VARCHAR(100), "
        "processed INTEGER NOT NULL DEFAULT 0)",
    )
    sql(
        db_url,
        "CREATE TABLE copies (id INTEGER PRIMARY KEY, name VARCHAR(50), note VARCHAR(100), "
        "message_id INTEGER)",
    )
    for row in PEOPLE[:2]:
        sql(
            db_url,
            "INSERT INTO patients (id, name, note) VALUES (:a, :b, :c)",
            dict(zip("abc", row, strict=True)),
        )
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "copy.toml").write_text(CHANNEL.format(url=db_url), encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n', encoding="utf-8"
    )
    engine = Engine(load_config(config, environ={}))
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors

    def copies() -> list[tuple[Any, ...]]:
        return sql(db_url, "SELECT id, name, note FROM copies ORDER BY id")

    await wait_for(lambda: len(copies()) == 2)
    sql(
        db_url,
        "INSERT INTO patients (id, name, note) VALUES (3, :b, :c)",
        dict(zip("bc", PEOPLE[2][1:], strict=True)),
    )
    await wait_for(lambda: len(copies()) == 3)
    await wait_for(
        lambda: sql(db_url, "SELECT COUNT(*) FROM patients WHERE processed = 0") == [(0,)]
    )
    assert copies() == PEOPLE

    # One stored message per row, each sent once: no row was read twice.
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")).scalar()
        statuses = conn.execute(
            sa.text(f"SELECT MESSAGE_ID, ID, STATUS FROM D_MM{n} ORDER BY MESSAGE_ID, ID")
        ).all()
        raw = conn.execute(
            sa.text(f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = 2 AND CONTENT_TYPE = 1")
        ).scalar()
    assert [tuple(s) for s in statuses] == [
        (1, 0, "T"),
        (1, 1, "S"),
        (2, 0, "T"),
        (2, 1, "S"),
        (3, 0, "T"),
        (3, 1, "S"),
    ]
    assert raw == (
        "<result><id>2</id><name>O'Brien</name><note>it's; DROP TABLE copies; --</note></result>"
    )
    message_ids = sql(db_url, "SELECT message_id FROM copies ORDER BY id")
    assert message_ids == [(1,), (2,), (3,)]
