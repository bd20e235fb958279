"""The Database Reader and Database Writer pass the kernel's connector conformance kit."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from pannier.testing import check_connector
from pannier_database.plugin import pannier_register_connectors


def connector(transport: str) -> Any:
    return next(c for c in pannier_register_connectors() if c.transport_name == transport)


async def test_database_reader_conforms(tmp_path: Path, sql: Callable[..., Any]) -> None:
    url = f"sqlite:///{tmp_path / 'in.db'}"
    sql(url, "CREATE TABLE inbox (id INTEGER PRIMARY KEY, body TEXT, done INTEGER DEFAULT 0)")
    counter = itertools.count(1)

    async def deliver(_info: object) -> None:
        number = next(counter)
        await trio.to_thread.run_sync(
            sql, url, "INSERT INTO inbox (id, body) VALUES (:id, 'MSH|^~\\&|A')", {"id": number}
        )

    await check_connector(
        connector("Database Reader"),
        properties={
            "url": url,
            "select": "SELECT id, body FROM inbox WHERE done = 0 ORDER BY id",
            "update": "UPDATE inbox SET done = 1 WHERE id = ${id}",
            "updateMode": 3,
            "pollingFrequency": 20,
        },
        deliver=deliver,
    )


async def test_database_writer_conforms(tmp_path: Path, sql: Callable[..., Any]) -> None:
    url = f"sqlite:///{tmp_path / 'out.db'}"
    sql(url, "CREATE TABLE outbox (id INTEGER, body TEXT)")
    await check_connector(
        connector("Database Writer"),
        properties={
            "url": url,
            "query": "INSERT INTO outbox (id, body) VALUES (${message.messageId}, "
            "${message.encodedData})",
        },
        failing_properties={"url": "mysql+pymysql://root@127.0.0.1:1/x", "query": "SELECT 1"},
    )
    [(message_id, body)] = sql(url, "SELECT id, body FROM outbox")
    assert message_id == 1 and body.startswith("MSH|^~\\&|KIT")
