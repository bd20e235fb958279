"""Destination queues (Mirth's ``DestinationConnector.run`` and ``DestinationQueue``,
mirth-compat §3.3).

A destination with ``queueEnabled`` does not hold up its message: the pipeline stores the
destination as QUEUED (with its rendered properties as SENT content) and answers the client;
``threadCount`` workers then deliver queued messages of *this server*, read from the database
in message id order — so a queue survives a restart. A send that comes back QUEUED (the
downstream is unreachable) is retried after ``retryIntervalMillis``: the same message again
(head of line), or, with ``rotate``, the next one first. SENT, ERROR or FILTERED are final and
stored with the response, send attempts and statistics.

With more than one worker and a ``threadAssignmentVariable``, each message goes to the worker
its variable's value hashes to, so messages with the same value are delivered one at a time
in order while other values proceed in parallel. The value is looked up as Mirth's
``MessageMaps`` does — connector map, channel map, source map, then the global channel,
global and configuration maps — in the maps *stored* with the message, so it is the same
after a restart. Without a variable, workers take the next message in any order.

A message is checked out by one worker from the moment it leaves the buffer until its outcome
is committed; a buffer refill never reads a checked-out message, so none is sent twice.

``regenerateTemplate`` renders the destination's properties again for each attempt instead of
reusing the stored SENT content; with ``includeFilterTransformer`` as well, the destination
filter and transformer run in the queue (on every attempt) rather than in the pipeline.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio

from pannier.connectors import Response
from pannier.model.status import ContentType, Status
from pannier.runtime import xstream
from pannier.store.store import UPDATE_CONNECTOR, Unit

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from pannier.runtime.channel import DeployedChannel, DestinationRuntime, MessageContext

log = logging.getLogger("pannier.queue")

EMPTY_SLEEP = 0.2  # Mirth's DESTINATION_QUEUE_EMPTY_SLEEP_TIME
OTHER_BUCKETS_REFILL = 1.0
"""A worker that finds only other workers' messages in the buffer reads the database again at
most this often, so one worker stuck on a failing message cannot starve the others."""

_CONTENT_TYPES = (
    ContentType.RAW,
    ContentType.ENCODED,
    ContentType.SENT,
    ContentType.CONNECTOR_MAP,
    ContentType.CHANNEL_MAP,
    ContentType.SOURCE_MAP,
)


@dataclass
class QueuedMessage:
    """One queued destination message as read back from the database."""

    id: int
    attempts: int
    received: Any
    source_encoded: str
    """The source's ENCODED content (else RAW): what the destination filter/transformer reads."""
    encoded: str
    """The destination's ENCODED content (else the source's): what is sent."""
    sent: str | None
    source_map: dict[str, Any] = field(default_factory=dict)
    channel_map: dict[str, Any] = field(default_factory=dict)
    connector_map: dict[str, Any] = field(default_factory=dict)
    bucket: int = 0


def assignment_value(variable: str, message: QueuedMessage) -> tuple[bool, Any]:
    """``(found, value)`` of a thread assignment variable in a message's own maps, looked up
    as Mirth's ``MessageMaps.get``: connector map, then channel map, then source map."""
    for values in (message.connector_map, message.channel_map, message.source_map):
        if variable in values:
            return True, values[variable]
    return False, None


def bucket_of(value: Any, threads: int) -> int:
    """The worker (0 .. threads-1) for a thread assignment value. A stable hash (CRC-32 of
    the text), so a value maps to the same worker in every process and after a restart."""
    text = "null" if value is None else str(value)  # Java's String.valueOf(null)
    return zlib.crc32(text.encode("utf-8")) % threads


class DestinationQueue:
    """Delivers one destination's queued messages with ``threadCount`` workers."""

    def __init__(self, channel: DeployedChannel, destination: DestinationRuntime) -> None:
        self.channel = channel
        self.destination = destination
        self.settings = destination.model.queue
        self.buffer = max(1, self.settings.queueBufferSize or 1000)
        self.threads = max(1, self.settings.threadCount)
        self.variable = self.settings.threadAssignmentVariable.strip() if self.threads > 1 else ""
        self.include_filter_transformer = (
            self.settings.queueEnabled
            and self.settings.regenerateTemplate
            and self.settings.includeFilterTransformer
        )
        """Mirth's ``includeFilterTransformerInQueue``: only together with regenerateTemplate."""
        self._wake = trio.Event()
        self._buffer: list[QueuedMessage] = []
        self._checked_out: set[int] = set()
        self._taken_during_refill: set[int] | None = None
        self._refill_lock = trio.Lock()
        self._last_refill = -OTHER_BUCKETS_REFILL
        self._stale = True
        self._read_all = False
        """The last read returned fewer rows than the buffer holds: nothing more was waiting."""
        self.depth = 0
        """Messages waiting or being delivered, as of the last read (the dashboard's
        "queued"; ``sendFirst`` sends directly only when it is 0)."""
        self.stopped = False
        """Mirth's stopped destination connector: messages keep queueing, none is sent."""
        self._started = trio.Event()
        self._started.set()

    def wake(self) -> None:
        """A message was just queued: look now rather than after the empty-queue sleep."""
        self._stale = True
        self._wake.set()

    def stop(self) -> None:
        """Stop delivering (the connector's ``_stop``): new messages are queued, not sent,
        and each worker halts after the message it is delivering."""
        if not self.stopped:
            self.stopped = True
            self._started = trio.Event()

    def start(self) -> None:
        """Deliver again after :meth:`stop`, oldest first."""
        if self.stopped:
            self.stopped = False
            self._started.set()
            self.wake()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(self.threads):
                nursery.start_soon(self._worker, index)

    # --- workers ------------------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        interval = self.settings.retryIntervalMillis / 1000
        last_id: int | None = None
        while True:
            await self._started.wait()
            try:
                message = await self._acquire(index)
            except Exception:
                log.exception(
                    "channel %s: destination %r: reading the queue failed",
                    self.channel.channel.name,
                    self.destination.model.name,
                )
                await trio.sleep(max(interval, EMPTY_SLEEP))
                continue
            if message is None:
                await self._idle()
                continue
            # A retry waits the retry interval first: the same message again, or (rotate) the
            # queue wrapped back to an older message that was tried before.
            if last_id is not None and (
                message.id == last_id
                or (self.settings.rotate and message.id < last_id and message.attempts > 0)
            ):
                await trio.sleep(interval)
            last_id = message.id
            status = Status.QUEUED
            try:
                while True:
                    status = await self._deliver(message)
                    if status != Status.QUEUED or self.settings.rotate:
                        break
                    await trio.sleep(interval)  # head of line: the same message again
            except Exception:
                # The outcome is unknown (e.g. the database went away): leave the row QUEUED,
                # to be read again, and do not spin.
                log.exception(
                    "channel %s: destination %r: delivering queued message %d failed",
                    self.channel.channel.name,
                    self.destination.model.name,
                    message.id,
                )
                await trio.sleep(interval)
            finally:
                self._release(message, finished=status != Status.QUEUED)

    async def _idle(self) -> None:
        with trio.move_on_after(EMPTY_SLEEP):
            await self._wake.wait()
        if self._wake.is_set():
            self._wake = trio.Event()

    async def _acquire(self, index: int) -> QueuedMessage | None:
        """Check out this worker's next message, reading the database when the buffer holds
        none for it."""
        message = self._take(index)
        if message is not None:
            return message
        if not self._stale:  # nothing was queued since the last read
            age = trio.current_time() - self._last_refill
            if self._buffer and age < OTHER_BUCKETS_REFILL:
                return None  # the buffer holds other workers' messages; read again later
            if not self._buffer and self._read_all and age < EMPTY_SLEEP:
                return None  # the last read found everything there was: idle workers wait
        before = self._last_refill
        async with self._refill_lock:
            if self._last_refill == before:  # else another worker just read: use that
                await self._refill()
            return self._take(index)

    def _take(self, index: int) -> QueuedMessage | None:
        for position, message in enumerate(self._buffer):
            if self.variable and message.bucket != index:
                continue
            del self._buffer[position]
            self._checked_out.add(message.id)
            if self._taken_during_refill is not None:
                self._taken_during_refill.add(message.id)
            return message
        return None

    def _release(self, message: QueuedMessage, finished: bool) -> None:
        self._checked_out.discard(message.id)
        if finished:
            self.depth = max(0, self.depth - 1)
        else:
            self._stale = True  # back in the queue (rotate): the next read must see it

    async def _refill(self) -> None:
        """Replace the buffer with the oldest queued messages that no worker holds.

        Messages checked out when the read starts are left out of the query; those checked
        out while it runs are left out of its result: either way a message being delivered
        (or just delivered) never comes back into the buffer."""
        excluded = frozenset(self._checked_out)
        self._stale = False
        taken: set[int] = set()
        self._taken_during_refill = taken
        try:
            rows = await self.channel.store.store.run_sync(self._read, excluded)
            if self.variable:
                for message in rows:
                    message.bucket = bucket_of(await self._assignment(message), self.threads)
        finally:
            self._taken_during_refill = None
        # No checkpoint from here on: no worker takes from the old buffer before it is replaced.
        batch = [m for m in rows if m.id not in self._checked_out and m.id not in taken]
        self._buffer = batch
        self._last_refill = trio.current_time()
        self._read_all = len(rows) < self.buffer
        self.depth = len(batch) + len(self._checked_out)

    async def _assignment(self, message: QueuedMessage) -> Any:
        found, value = assignment_value(self.variable, message)
        if found:
            return value
        # Mirth's MirthMessageMaps: then the global channel, global and configuration maps.
        backend = self.channel.engine.map_backend
        for scope in (f"global_channel:{self.channel.id}", "global", "configuration"):
            value = await backend.get(scope, self.variable)
            if value is not None:
                return value
        return None

    def _read(self, excluded: frozenset[int]) -> list[QueuedMessage]:
        tables = self.channel.store.tables
        mm, mc = tables.connector_message, tables.content
        metadata_id = self.destination.model.metaDataId
        query = sa.select(mm.c.MESSAGE_ID, mm.c.SEND_ATTEMPTS, mm.c.RECEIVED_DATE).where(
            mm.c.ID == metadata_id,
            mm.c.STATUS == Status.QUEUED.value,
            mm.c.SERVER_ID == self.channel.server_id,
        )
        if excluded:
            query = query.where(mm.c.MESSAGE_ID.notin_(sorted(excluded)))
        with self.channel.store.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(mm.c.MESSAGE_ID).limit(self.buffer)).all()
            if not rows:
                return []
            ids = [r.MESSAGE_ID for r in rows]
            contents: dict[tuple[int, int, int], str] = {
                (r.MESSAGE_ID, r.METADATA_ID, r.CONTENT_TYPE): r.CONTENT or ""
                for r in conn.execute(
                    sa.select(
                        mc.c.MESSAGE_ID, mc.c.METADATA_ID, mc.c.CONTENT_TYPE, mc.c.CONTENT
                    ).where(
                        mc.c.MESSAGE_ID.in_(ids),
                        mc.c.METADATA_ID.in_([0, metadata_id]),
                        mc.c.CONTENT_TYPE.in_([int(t) for t in _CONTENT_TYPES]),
                    )
                )
            }
        batch = []
        for r in rows:

            def get(owner: int, kind: ContentType, message_id: int = r.MESSAGE_ID) -> str | None:
                return contents.get((message_id, owner, int(kind)))

            source_encoded = get(0, ContentType.ENCODED) or get(0, ContentType.RAW) or ""
            channel_map = get(metadata_id, ContentType.CHANNEL_MAP) or get(
                0, ContentType.CHANNEL_MAP
            )
            batch.append(
                QueuedMessage(
                    id=r.MESSAGE_ID,
                    attempts=r.SEND_ATTEMPTS or 0,
                    received=r.RECEIVED_DATE,
                    source_encoded=source_encoded,
                    encoded=get(metadata_id, ContentType.ENCODED) or source_encoded,
                    sent=get(metadata_id, ContentType.SENT),
                    source_map=_parse_map(get(0, ContentType.SOURCE_MAP)),
                    channel_map=_parse_map(channel_map),
                    connector_map=_parse_map(get(metadata_id, ContentType.CONNECTOR_MAP)),
                )
            )
        return batch

    # --- one attempt --------------------------------------------------------------------------

    async def _deliver(self, message: QueuedMessage) -> Status:
        from pannier.runtime.channel import MessageContext, fix_status

        channel, destination = self.channel, self.destination
        ctx = MessageContext(
            message.id,
            message.source_encoded,
            message.received,
            dict(message.source_map),
            channel_map=dict(message.channel_map),
        )
        encoded = message.encoded
        unit = Unit()
        if self.include_filter_transformer and (
            destination.filter.rules or destination.transformer.steps
        ):
            verdict, encoded, error = await self._filter_transform(message, ctx, unit)
            if verdict != Status.TRANSFORMED:
                return await self._finish_unsent(message, unit, verdict, error)
        ctx.encoded = encoded
        properties: Mapping[str, Any]
        if message.sent and not self.settings.regenerateTemplate:
            properties = xstream.parse_properties(message.sent, destination.model.properties)
        else:
            properties = channel.render_properties(destination, ctx, encoded)
            if channel.storage.enabled and channel.storage.store_sent:
                sent = xstream.serialize_properties(
                    destination.type.mirth_properties_class, properties
                )
                self._store_content(unit, message.id, ContentType.SENT, sent, None)
        store = channel.store.store
        send_date = store.now()
        response = await channel.send(destination, ctx, encoded, properties)
        response, response_content = await channel.transform_response(destination, ctx, response)
        status = fix_status(response.status, queue_enabled=True)
        message.attempts += 1
        update: dict[str, Any] = {
            "b_message_id": message.id,
            "b_metadata_id": destination.model.metaDataId,
            "SEND_ATTEMPTS": message.attempts,
            "STATUS": status.value,
        }
        if status != Status.QUEUED:
            update.update(
                SEND_DATE=send_date,
                RESPONSE_DATE=store.now(),
                ERROR_CODE=ContentType.PROCESSING_ERROR.error_code if status == Status.ERROR else 0,
            )
            self._final_content(unit, message.id, response, status)
            channel.add_response_content(unit, message.id, destination, response_content)
        unit.add(UPDATE_CONNECTOR, channel.store.update_connector, update)
        if channel.storage.enabled:
            await store.commit(unit)
        if status != Status.QUEUED:
            channel.statistics.update(destination.model.metaDataId, status, Status.QUEUED)
        else:
            log.info(
                "channel %s: destination %r still cannot deliver message %d (attempt %d): %s",
                channel.channel.name,
                destination.model.name,
                message.id,
                message.attempts,
                response.error or response.status_message,
            )
        return status

    async def _filter_transform(
        self, message: QueuedMessage, ctx: MessageContext, unit: Unit
    ) -> tuple[Status, str, str]:
        """Run the destination filter/transformer on the source's encoded message (Mirth's
        ``DestinationConnector.transform`` from the queue thread): (verdict, encoded, error).
        Its content and maps replace what an earlier attempt stored."""
        from pannier.runtime.channel import _describe

        channel, destination = self.channel, self.destination
        assert destination.datatype is not None
        connector_map: dict[str, Any] = {}
        shared = await channel._load_shared(
            destination.filter.shared or destination.transformer.shared
        )
        encoded, transformed, error = message.source_encoded, None, ""
        try:
            verdict, encoded, transformed = channel._filter_transform(
                destination.datatype,
                destination.filter,
                destination.transformer,
                message.source_encoded,
                ctx,
                connector_map,
                shared,
            )
        except Exception as exc:  # the message's error, stored on this destination
            verdict, error = Status.ERROR, _describe(exc)
        await channel._save_shared(shared)
        message.connector_map, message.channel_map = connector_map, dict(ctx.channel_map)
        storage = channel.storage
        if not storage.enabled:
            return verdict, encoded, error
        if transformed is not None and storage.store_transformed:
            self._store_content(unit, message.id, ContentType.TRANSFORMED, transformed, "XML")
        if verdict == Status.TRANSFORMED and storage.store_destination_encoded:
            self._store_content(
                unit,
                message.id,
                ContentType.ENCODED,
                encoded,
                destination.model.outboundDataType,
            )
        if storage.store_maps:
            for kind, values in (
                (ContentType.CONNECTOR_MAP, connector_map),
                (ContentType.CHANNEL_MAP, ctx.channel_map),
            ):
                if values:
                    self._store_content(unit, message.id, kind, xstream.serialize_map(values), None)
        if storage.store_custom_metadata:
            self._store_metadata(
                unit, message.id, channel._metadata_values(connector_map, ctx.channel_map)
            )
        return verdict, encoded, error

    def _store_metadata(self, unit: Unit, message_id: int, values: dict[str, Any]) -> None:
        """The destination's custom metadata (``D_MCM``) from this run, replacing an earlier
        attempt's row (Mirth's ``storeMetaData`` on a retry)."""
        if not values:
            return
        columns = [name for name, _mapping in self.channel._metadata_columns]
        table = self.channel.store.tables.custom_metadata_for(columns)
        metadata_id = self.destination.model.metaDataId
        row: dict[str, Any] = {"MESSAGE_ID": message_id, "METADATA_ID": metadata_id}
        row.update({name: values.get(name) for name in columns})

        def write(conn: Connection) -> None:
            conn.execute(
                sa.delete(table).where(
                    table.c.MESSAGE_ID == message_id, table.c.METADATA_ID == metadata_id
                )
            )
            conn.execute(sa.insert(table), row)

        unit.custom.append(write)

    async def _finish_unsent(
        self, message: QueuedMessage, unit: Unit, status: Status, error: str
    ) -> Status:
        """The queue's filter/transformer filtered the message or failed: final, not sent."""
        channel, metadata_id = self.channel, self.destination.model.metaDataId
        if error and channel.storage.enabled:
            self._store_content(unit, message.id, ContentType.PROCESSING_ERROR, error, None)
        unit.add(
            UPDATE_CONNECTOR,
            channel.store.update_connector,
            {
                "b_message_id": message.id,
                "b_metadata_id": metadata_id,
                "STATUS": status.value,
                "ERROR_CODE": ContentType.PROCESSING_ERROR.error_code if error else 0,
            },
        )
        if channel.storage.enabled:
            await channel.store.store.commit(unit)
        channel.statistics.update(metadata_id, status, Status.QUEUED)
        return status

    def _store_content(
        self,
        unit: Unit,
        message_id: int,
        content_type: ContentType,
        content: str,
        data_type: str | None,
    ) -> None:
        store_content(
            self.channel,
            unit,
            message_id,
            self.destination.model.metaDataId,
            content_type,
            content,
            data_type,
        )

    def _final_content(
        self, unit: Unit, message_id: int, response: Response, status: Status
    ) -> None:
        channel, storage = self.channel, self.channel.storage
        metadata_id = self.destination.model.metaDataId
        if storage.enabled and storage.store_response:
            channel.store.add_content(
                unit,
                message_id,
                metadata_id,
                ContentType.RESPONSE,
                xstream.serialize_response(response),
                self.destination.model.outboundDataType,
            )
        if storage.enabled and status == Status.ERROR and response.error:
            channel.store.add_content(
                unit, message_id, metadata_id, ContentType.PROCESSING_ERROR, response.error, None
            )


def store_content(
    channel: DeployedChannel,
    unit: Unit,
    message_id: int,
    metadata_id: int,
    content_type: ContentType,
    content: str,
    data_type: str | None,
) -> None:
    """Mirth's ``storeMessageContent``: update the content row, or insert it when there is
    none (a retry, or a recovered step, rewrites what an earlier attempt stored)."""
    channel_store = channel.store
    mc = channel_store.tables.content
    key = (
        (mc.c.MESSAGE_ID == message_id)
        & (mc.c.METADATA_ID == metadata_id)
        & (mc.c.CONTENT_TYPE == int(content_type))
    )

    def write(conn: Connection) -> None:
        values = {"CONTENT": content, "DATA_TYPE": data_type, "IS_ENCRYPTED": False}
        if conn.execute(sa.update(mc).where(key).values(**values)).rowcount == 0:
            conn.execute(
                channel_store.insert_content,
                {
                    "METADATA_ID": metadata_id,
                    "MESSAGE_ID": message_id,
                    "CONTENT_TYPE": int(content_type),
                    **values,
                },
            )

    unit.custom.append(write)


def _parse_map(text: str | None) -> dict[str, Any]:
    return xstream.parse_map(text) if text else {}
