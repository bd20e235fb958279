"""Destination queues (Mirth's ``DestinationConnector.run``, mirth-compat §3.3).

A destination with ``queueEnabled`` does not hold up its message: the pipeline stores the
destination as QUEUED (with its rendered properties as SENT content) and answers the client;
this worker then delivers queued messages of *this server*, in message id order, read from
the database — so a queue survives a restart. A send that comes back QUEUED (the downstream is
unreachable) is retried after ``retryIntervalMillis``: the same message again (head of line),
or, with ``rotate``, the next one first. SENT, ERROR or FILTERED are final and stored with the
response, send attempts and statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio

from pannier.connectors import Response
from pannier.model.status import ContentType, Status
from pannier.runtime import xstream
from pannier.store.store import UPDATE_CONNECTOR, Unit

if TYPE_CHECKING:
    from pannier.runtime.channel import DeployedChannel, DestinationRuntime

log = logging.getLogger("pannier.queue")

EMPTY_SLEEP = 0.2  # Mirth's DESTINATION_QUEUE_EMPTY_SLEEP_TIME


class DestinationQueue:
    """Delivers one destination's queued messages."""

    def __init__(self, channel: DeployedChannel, destination: DestinationRuntime) -> None:
        self.channel = channel
        self.destination = destination
        self.settings = destination.model.queue
        self.buffer = max(1, self.settings.queueBufferSize or 1000)
        self._wake = trio.Event()
        self.depth = 0
        """Messages waiting, as of the last read (the dashboard's "queued")."""

    def wake(self) -> None:
        """A message was just queued: look now rather than after the empty-queue sleep."""
        self._wake.set()

    async def run(self) -> None:
        interval = self.settings.retryIntervalMillis / 1000
        while True:
            batch = await self.channel.store.store.run_sync(self._read)
            self.depth = len(batch)
            if not batch:
                with trio.move_on_after(EMPTY_SLEEP):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            for row in batch:
                while True:
                    status = await self._deliver(row)
                    if status != Status.QUEUED:
                        break
                    await trio.sleep(interval)
                    if self.settings.rotate:
                        break  # the next message gets its turn first
                if status == Status.QUEUED and self.settings.rotate:
                    continue

    def _read(self) -> list[dict[str, Any]]:
        tables = self.channel.store.tables
        mm, mc = tables.connector_message, tables.content
        metadata_id = self.destination.model.metaDataId
        with self.channel.store.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(mm.c.MESSAGE_ID, mm.c.SEND_ATTEMPTS, mm.c.RECEIVED_DATE)
                .where(
                    mm.c.ID == metadata_id,
                    mm.c.STATUS == Status.QUEUED.value,
                    mm.c.SERVER_ID == self.channel.server_id,
                )
                .order_by(mm.c.MESSAGE_ID)
                .limit(self.buffer)
            ).all()
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
                        mc.c.CONTENT_TYPE.in_(
                            [int(ContentType.RAW), int(ContentType.ENCODED), int(ContentType.SENT)]
                        ),
                    )
                )
            }
        batch = []
        for r in rows:
            encoded = (
                contents.get((r.MESSAGE_ID, metadata_id, ContentType.ENCODED))
                or contents.get((r.MESSAGE_ID, 0, ContentType.ENCODED))
                or contents.get((r.MESSAGE_ID, 0, ContentType.RAW), "")
            )
            batch.append(
                {
                    "id": r.MESSAGE_ID,
                    "attempts": r.SEND_ATTEMPTS or 0,
                    "received": r.RECEIVED_DATE,
                    "encoded": encoded,
                    "sent": contents.get((r.MESSAGE_ID, metadata_id, ContentType.SENT)),
                }
            )
        return batch

    async def _deliver(self, row: dict[str, Any]) -> Status:
        from pannier.runtime.channel import MessageContext, fix_status

        channel, destination = self.channel, self.destination
        ctx = MessageContext(row["id"], row["encoded"], row["received"], {})
        ctx.encoded = row["encoded"]
        properties: Mapping[str, Any]
        if row["sent"] and not self.settings.regenerateTemplate:
            properties = xstream.parse_properties(row["sent"], destination.model.properties)
        else:
            properties = channel.render_properties(destination, ctx, row["encoded"])
        store = channel.store.store
        send_date = store.now()
        response = await channel.send(destination, ctx, row["encoded"], properties)
        response, response_content = await channel.transform_response(destination, ctx, response)
        status = fix_status(response.status, queue_enabled=True)
        row["attempts"] += 1
        unit = Unit()
        update: dict[str, Any] = {
            "b_message_id": row["id"],
            "b_metadata_id": destination.model.metaDataId,
            "SEND_ATTEMPTS": row["attempts"],
            "STATUS": status.value,
        }
        if status != Status.QUEUED:
            update.update(
                SEND_DATE=send_date,
                RESPONSE_DATE=store.now(),
                ERROR_CODE=ContentType.PROCESSING_ERROR.error_code if status == Status.ERROR else 0,
            )
            self._final_content(unit, row["id"], response, status)
            channel.add_response_content(unit, row["id"], destination, response_content)
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
                row["id"],
                row["attempts"],
                response.error or response.status_message,
            )
        return status

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
