"""The "Database Writer" destination: runs one parameterised statement per message.

Mirth's ``DatabaseDispatcherProperties`` (``driver``, ``url``, ``username``, ``password``,
``query``, ``useScript``). Every ``${...}`` in ``query`` is bound as a parameter (see
:mod:`pannier_database.statements`), looked up in the message's maps and facts
(``message.encodedData``, ``message.messageId``, ``channelId``...). The statement runs in its
own transaction on a pooled engine made at channel start, in one worker-thread hop per message.

Outcomes: SENT with Mirth's status message ``Database write success, N rows updated``; QUEUED
when the database cannot be reached (a queued destination retries; without a queue the kernel
records ERROR, as Mirth does); ERROR with the driver's message when the statement fails (bad
SQL, a constraint): retrying the same statement would fail the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
import trio
from pannier import ConnectorSetup, DestinationConnector, Response, SendRequest, Status
from pannier.properties import PropertyError, get_bool, get_int, get_str

from pannier_database.connection import (
    create_engine,
    database_url,
    driver_message,
    shown,
)
from pannier_database.statements import Statement, prepare, template_value

LOG = logging.getLogger("pannier.database")

WRITER_MIRTH_CLASS = "com.mirth.connect.connectors.jdbc.DatabaseDispatcherProperties"

WRITER_DEFAULTS: dict[str, Any] = {
    "driver": "",
    "url": "",
    "username": "",
    "password": "",
    "query": "",
    "useScript": False,
    # Pannier: how long to wait for a connection (MariaDB/MySQL and PostgreSQL).
    "connectTimeout": 10000,
}

WHO = "Database Writer"


class DatabaseWriter(DestinationConnector):
    """Runs ``query`` once per message with its ``${...}`` values bound."""

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        if get_bool(props, "useScript", False):
            raise PropertyError(
                f"{WHO}: useScript = true: JavaScript database scripts are not supported; "
                f"use a query with ${{...}} values"
            )
        query = get_str(props, "query", "").strip()
        if not query:
            raise PropertyError(f"{WHO}: query is required (the SQL statement to run)")
        self.statement: Statement = prepare(query)
        self.url = database_url(props, setup.base_directory, WHO)
        self.connect_timeout = get_int(props, "connectTimeout", 10000, minimum=1) / 1000
        self._engine: sa.Engine | None = None

    async def start(self) -> None:
        self._engine = create_engine(self.url, keep_open=True, connect_timeout=self.connect_timeout)
        self._setup.report_state("idle", {})

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await trio.to_thread.run_sync(engine.dispose)

    def _values(self, request: SendRequest) -> list[str]:
        variables: dict[str, Any] = {
            **request.maps,
            "message.encodedData": request.encoded,
            "message.messageId": request.message_id,
            "message.channelId": request.channel_id,
            "message.metaDataId": request.metadata_id,
            "channelId": request.channel_id,
            "channelName": self._setup.channel_name,
            "messageId": request.message_id,
        }
        return [template_value(name, variables) for name in self.statement.names]

    async def send(self, request: SendRequest) -> Response:
        parameters = self.statement.parameters(self._values(request))
        engine = self._engine
        own = engine is None
        if engine is None:  # send() without start(): an engine for this one message
            engine = create_engine(self.url, keep_open=False, connect_timeout=self.connect_timeout)
        self._setup.report_state("sending", {"url": shown(self.url)})
        try:
            return await trio.to_thread.run_sync(self._execute, engine, parameters)
        finally:
            if own:
                engine.dispose()
            self._setup.report_state("idle", {})

    def _execute(self, engine: sa.Engine, parameters: dict[str, Any]) -> Response:
        """Worker thread: connect, run the statement in a transaction, say how it went."""
        try:
            connection = engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            return self._unreachable(exc)
        with connection:
            try:
                with connection.begin():
                    result = connection.execute(self.statement.clause, parameters)
                    count = -1 if result.returns_rows else result.rowcount
                    result.close()
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    return self._unreachable(exc)
                return self._failed(exc)
            except sa.exc.SQLAlchemyError as exc:
                return self._failed(exc)
        if count < 0:
            return Response(Status.SENT, status_message="Database write success")
        return Response(Status.SENT, status_message=f"Database write success, {count} rows updated")

    def _unreachable(self, exc: BaseException) -> Response:
        detail = driver_message(exc)
        LOG.warning("%s: cannot connect to %s: %s", WHO, shown(self.url), detail)
        return Response(
            Status.QUEUED,
            status_message="Error writing to database.",
            error=f"{WHO}: cannot connect to {shown(self.url)}: {detail}",
        )

    def _failed(self, exc: BaseException) -> Response:
        detail = driver_message(exc)
        LOG.warning("%s: statement failed on %s: %s", WHO, shown(self.url), detail)
        return Response(
            Status.ERROR,
            status_message="Error writing to database.",
            error=f"{WHO}: failed to write to database: {detail}",
        )
