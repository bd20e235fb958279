"""The "Database Reader" source: polls with a SELECT and makes each row a message.

Mirth's ``DatabaseReceiverProperties`` with the query delegate (``useScript = false``); every
property with its default is described in ``docs/connectors/database.md``.

Each poll (only when ``setup.should_poll()`` says this node should poll) runs ``select`` in one
worker-thread hop, which also turns every row into its XML message, then dispatches the rows one
at a time, in order, waiting for each result. ``updateMode`` then marks what was read:

* ``1`` (never): nothing; the query itself must not return a row twice.
* ``2`` (once): ``update`` runs once after the poll, without row values.
* ``3`` (each): ``update`` runs after each message with that row's values: ``${id}`` is the
  row's ``id`` column (names are case-insensitive). With ``aggregateResults`` it runs for
  every row of the one message.

As in Mirth, the update for a row runs only once the row's message is stored: a row whose
dispatch failed is not marked, and is read again by the next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa
import trio
from pannier import (
    ChannelStoppedError,
    ConnectorSetup,
    Dispatcher,
    RawMessage,
    SourceConnector,
    run_polls,
)
from pannier.properties import PropertyError, get_bool, get_int, get_str, resolve_charset

from pannier_database.connection import create_engine, database_url, driver_message, shown
from pannier_database.results import DuplicateColumnError, Row, column_names, row_xml, rows_xml
from pannier_database.statements import Statement, prepare, template_value

LOG = logging.getLogger("pannier.database")

READER_MIRTH_CLASS = "com.mirth.connect.connectors.jdbc.DatabaseReceiverProperties"

UPDATE_NEVER = 1
UPDATE_ONCE = 2
UPDATE_EACH = 3
_UPDATE_MODES = {UPDATE_NEVER: "never", UPDATE_ONCE: "once", UPDATE_EACH: "each"}

READER_DEFAULTS: dict[str, Any] = {
    # DatabaseReceiverProperties
    "driver": "",
    "url": "",
    "username": "",
    "password": "",
    "select": "",
    "update": "",
    "useScript": False,
    "aggregateResults": False,
    "cacheResults": True,
    "keepConnectionOpen": True,
    "updateMode": UPDATE_NEVER,
    "retryCount": 3,
    "retryInterval": 10000,
    "fetchSize": 1000,
    "encoding": "DEFAULT_ENCODING",
    # pollConnectorProperties (INTERVAL polling only)
    "pollingFrequency": 5000,
    "pollOnStart": False,
    # Pannier: how long to wait for a connection (MariaDB/MySQL and PostgreSQL).
    "connectTimeout": 10000,
    # sourceConnectorProperties: read by the kernel (response selection), not here.
    "responseVariable": "None",
}

WHO = "Database Reader"


@dataclass(frozen=True)
class _Fetched:
    """What one poll's SELECT returned: the rows and their messages."""

    rows: list[Row]
    messages: list[str]


class DatabaseReader(SourceConnector):
    """Polls ``select`` every ``pollingFrequency`` ms and dispatches each row."""

    def __init__(self, setup: ConnectorSetup) -> None:
        props = setup.properties
        self._setup = setup
        if get_bool(props, "useScript", False):
            raise PropertyError(
                f"{WHO}: useScript = true: JavaScript polling scripts are not supported; "
                f"use a select query"
            )
        select = get_str(props, "select", "").strip()
        if not select:
            raise PropertyError(f"{WHO}: select is required (the query to poll with)")
        self.select: Statement = prepare(select)
        self.update_mode = get_int(props, "updateMode", UPDATE_NEVER)
        if self.update_mode not in _UPDATE_MODES:
            raise PropertyError(
                f"{WHO}: updateMode = {self.update_mode!r}; expected 1 (never), 2 (once after "
                f"all messages) or 3 (after each message)"
            )
        update = get_str(props, "update", "").strip()
        if self.update_mode != UPDATE_NEVER and not update:
            raise PropertyError(
                f"{WHO}: updateMode = {self.update_mode} "
                f"({_UPDATE_MODES[self.update_mode]}) needs an update statement"
            )
        self.update: Statement | None = prepare(update) if update else None
        self.url = database_url(props, setup.base_directory, WHO)
        self.aggregate = get_bool(props, "aggregateResults", False)
        self.keep_open = get_bool(props, "keepConnectionOpen", True)
        get_bool(props, "cacheResults", True)  # accepted; rows are always read in one go
        self.retry_count = get_int(props, "retryCount", 3, minimum=0)
        self.retry_interval = get_int(props, "retryInterval", 10000, minimum=0) / 1000
        self.fetch_size = get_int(props, "fetchSize", 1000, minimum=0)
        self.encoding = resolve_charset(props.get("encoding", "DEFAULT_ENCODING"), "encoding")
        self.polling_frequency = get_int(props, "pollingFrequency", 5000, minimum=1) / 1000
        self.poll_on_start = get_bool(props, "pollOnStart", False)
        self.connect_timeout = get_int(props, "connectTimeout", 10000, minimum=1) / 1000
        self._engine: sa.Engine | None = None
        self.polls = 0
        """How many polls ran (for tests and diagnostics)."""

    def _report(self, state: str, **details: Any) -> None:
        self._setup.report_state(state, details)

    # -- the connector ------------------------------------------------------------------------

    async def run(
        self,
        dispatcher: Dispatcher,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.open()
        LOG.info(
            "%s of channel %s polling %s every %s ms",
            WHO,
            self._setup.channel_name,
            shown(self.url),
            int(self.polling_frequency * 1000),
        )
        self._report("idle")
        task_status.started(shown(self.url))
        try:
            await run_polls(
                self._setup,
                partial(self.poll, dispatcher),
                interval=self.polling_frequency,
                on_start=self.poll_on_start,
                who=WHO,
            )
        finally:
            self.close()
            LOG.info("%s of channel %s stopped", WHO, self._setup.channel_name)

    def open(self) -> sa.Engine:
        """The connector's engine (its connection pool), made on first use."""
        if self._engine is None:
            self._engine = create_engine(
                self.url, keep_open=self.keep_open, connect_timeout=self.connect_timeout
            )
        return self._engine

    def close(self) -> None:
        """Close the pool's connections (no network round trip; safe to call twice)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    async def poll(self, dispatcher: Dispatcher) -> None:
        """One poll: select, dispatch every row (or one aggregate), run the post-process."""
        self.polls += 1
        self._report("polling", url=shown(self.url))
        try:
            fetched = await self._fetch()
            if fetched is None:
                return
            self._report("reading", rows=len(fetched.rows))
            if self.aggregate:
                finished = await self._dispatch_aggregate(fetched, dispatcher)
            else:
                finished = await self._dispatch_rows(fetched, dispatcher)
            if finished and self.update_mode == UPDATE_ONCE:
                await self._post_process([None])
        finally:
            self._report("idle")

    # -- select -------------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        return {"channelId": self._setup.channel_id, "channelName": self._setup.channel_name}

    async def _fetch(self) -> _Fetched | None:
        """The poll's rows, retrying ``retryCount`` times ``retryInterval`` apart; None when
        the query keeps failing (logged)."""
        context = self._context()
        parameters = self.select.parameters(
            [template_value(name, context) for name in self.select.names]
        )
        attempt = 0
        while True:
            try:
                return await trio.to_thread.run_sync(self._fetch_sync, self.open(), parameters)
            except DuplicateColumnError as exc:
                LOG.error("%s of channel %s: %s", WHO, self._setup.channel_name, exc)
                return None
            except sa.exc.SQLAlchemyError as exc:
                if attempt >= self.retry_count:
                    LOG.error(
                        "%s of channel %s: polling %s failed: %s",
                        WHO,
                        self._setup.channel_name,
                        shown(self.url),
                        driver_message(exc),
                    )
                    return None
                attempt += 1
                LOG.warning(
                    "%s of channel %s: polling %s failed (%s); retry %d of %d in %s ms",
                    WHO,
                    self._setup.channel_name,
                    shown(self.url),
                    driver_message(exc),
                    attempt,
                    self.retry_count,
                    int(self.retry_interval * 1000),
                )
                await trio.sleep(self.retry_interval)

    def _fetch_sync(self, engine: sa.Engine, parameters: dict[str, Any]) -> _Fetched:
        """Worker thread: run the select, read every row, make the messages."""
        with engine.connect() as connection:
            if self.fetch_size:
                connection = connection.execution_options(yield_per=self.fetch_size)
            result = connection.execute(self.select.clause, parameters)
            names = column_names(list(result.keys()))
            rows: list[Row] = [dict(zip(names, values, strict=True)) for values in result]
        return _Fetched(rows, [row_xml(row, self.encoding) for row in rows])

    # -- dispatch -----------------------------------------------------------------------------

    async def _dispatch_rows(self, fetched: _Fetched, dispatcher: Dispatcher) -> bool:
        """Dispatch each row in order; False when the channel is stopping."""
        for row, message in zip(fetched.rows, fetched.messages, strict=True):
            stored, message_id = await self._dispatch(message, dispatcher)
            if stored is None:
                return False
            if stored and self.update_mode == UPDATE_EACH:
                await self._post_process([row], message_id)
        return True

    async def _dispatch_aggregate(self, fetched: _Fetched, dispatcher: Dispatcher) -> bool:
        if not fetched.rows:
            return True  # Mirth sends no empty <results/> message
        stored, message_id = await self._dispatch(rows_xml(fetched.messages), dispatcher)
        if stored is None:
            return False
        if stored and self.update_mode == UPDATE_EACH:
            await self._post_process(fetched.rows, message_id)
        return True

    async def _dispatch(
        self, message: str, dispatcher: Dispatcher
    ) -> tuple[bool | None, int | None]:
        """(stored, message id): stored is None when the channel is stopping, False when the
        dispatch failed (logged)."""
        try:
            result = await dispatcher.dispatch(RawMessage(message, {}))
        except ChannelStoppedError:
            LOG.info("%s: channel stopping; the remaining rows are left for later", WHO)
            return None, None
        except Exception as exc:
            LOG.error(
                "%s of channel %s: processing a row failed (it is not marked and will be read "
                "again): %s",
                WHO,
                self._setup.channel_name,
                exc,
            )
            return False, None
        return result.message_id is not None, result.message_id

    # -- post-process -------------------------------------------------------------------------

    async def _post_process(
        self, rows: Sequence[Row | None], message_id: int | None = None
    ) -> None:
        """Run ``update`` once per entry of ``rows`` (None: no row values), in one hop."""
        assert self.update is not None
        update = self.update
        context: dict[str, Any] = self._context()
        if message_id is not None:
            context["message.messageId"] = context["messageId"] = message_id
        batches = [update.parameters(_row_values(update, row, context)) for row in rows]
        try:
            await trio.to_thread.run_sync(self._update_sync, self.open(), update, batches)
        except sa.exc.SQLAlchemyError as exc:
            LOG.error(
                "%s of channel %s: the update statement failed after %d retries (the rows "
                "will be read again): %s",
                WHO,
                self._setup.channel_name,
                self.retry_count,
                driver_message(exc),
            )

    def _update_sync(
        self, engine: sa.Engine, update: Statement, batches: list[dict[str, Any]]
    ) -> None:
        """Worker thread: the update statements in one transaction, retried ``retryCount``
        times at once on failure (as Mirth retries its post-process)."""
        attempt = 0
        while True:
            try:
                with engine.begin() as connection:
                    for parameters in batches:
                        connection.execute(update.clause, parameters).close()
                return
            except sa.exc.SQLAlchemyError as exc:
                if attempt >= self.retry_count:
                    raise
                attempt += 1
                LOG.warning("%s: update failed (%s); retrying", WHO, driver_message(exc))


def _row_values(update: Statement, row: Row | None, context: dict[str, Any]) -> list[Any]:
    """Each ``${name}`` of the update: the row's column of that name (any case) with its
    database value, else the message/channel variable as text, else the reference itself."""
    values: list[Any] = []
    for name in update.names:
        key = name.lower()
        if row is not None and key in row:
            values.append(row[key])
        else:
            values.append(template_value(name, context))
    return values
