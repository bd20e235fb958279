"""Recovery at channel start: finish this server's messages that a crash left unfinished.

As Mirth's ``RecoveryTask`` (mirth-compat §3.5), only rows whose ``SERVER_ID`` is this
engine's are touched, up to the highest message id present at start, in ascending message id
order, a page at a time:

* a message whose source is still RECEIVED (its "received" transaction committed, its
  "processed" one did not) is processed again from its stored RAW content;
* a message Java Mirth left unfinished (``PROCESSED = FALSE``, source past RECEIVED) has its
  destinations in RECEIVED sent again and the others kept as they are;
* then the message is marked processed, with its response stored;
* a destination left PENDING (status P: sent, its response stored, the response transformer
  not finished) is never sent again: as Mirth's ``processPendingConnectorMessage``, only the
  response transformer runs again, on the stored RESPONSE content, and its outcome becomes
  the destination's status — for unfinished messages first, then for processed ones
  (Mirth's third cursor, ``getPendingMessageIds``).

Recovery never marks a message errored just because it was interrupted. It is skipped, as in
Mirth, when the storage mode keeps no recovery data (RAW, METADATA, DISABLED).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pannier.connectors import Response
from pannier.model.status import ContentType, Status
from pannier.runtime import xstream
from pannier.runtime.queue import store_content
from pannier.store.store import UPDATE_CONNECTOR, Unit

if TYPE_CHECKING:
    from pannier.runtime.channel import DeployedChannel, MessageContext

log = logging.getLogger("pannier.recovery")

PAGE = 100


async def recover(channel: DeployedChannel) -> int:
    """Finish every unfinished message of this server; return how many were finished."""
    from pannier.runtime.channel import MessageContext  # channel.py imports this module

    if not channel.storage.message_recovery:
        log.info(
            "channel %s: recovery skipped (storage mode %s keeps no recovery data)",
            channel.channel.name,
            channel.channel.properties.messageStorageMode.name,
        )
        return 0
    store = channel.store.store
    tables = channel.store.tables
    server_id = channel.server_id
    message = tables.message

    def highest_id() -> int | None:
        with store.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(message.c.ID)).where(message.c.SERVER_ID == server_id)
            ).scalar()

    top = await store.run_sync(highest_id)
    if top is None:
        return 0
    after, finished = 0, 0
    while True:
        page = await store.run_sync(_unfinished_page, channel, after, top)
        if not page:
            break
        for item in page:
            after = item["id"]
            if item["raw"] is None:
                log.error(
                    "channel %s: message %d cannot be recovered: its raw content was not stored",
                    channel.channel.name,
                    item["id"],
                )
                continue
            ctx = MessageContext(item["id"], item["raw"], item["received"], item["source_map"])
            try:
                for metadata_id, response in item["pending"].items():
                    item["destinations"][metadata_id] = await finish_pending(
                        channel, ctx, metadata_id, response
                    )
                await store.run_sync(_clear_source_outcome, channel, item["id"])
                await channel.process_received(ctx, existing=item["destinations"])
            except Exception as exc:  # one message must not stop the channel or the rest
                log.error(
                    "channel %s: recovering message %d failed, it stays unfinished: %s",
                    channel.channel.name,
                    item["id"],
                    exc,
                )
                continue
            finished += 1
    finished += await _recover_pending(channel, top)
    if finished:
        log.info("channel %s: recovered %d unfinished message(s)", channel.channel.name, finished)
    return finished


_SOURCE_KEPT = (int(ContentType.RAW), int(ContentType.SOURCE_MAP))


def _clear_source_outcome(channel: DeployedChannel, message_id: int) -> None:
    """The source step runs again from RAW: remove what an interrupted run of it stored (a
    message Java Mirth left unfinished has its source ENCODED, maps and custom metadata), so
    the new run's rows take their place instead of colliding with them."""
    tables = channel.store.tables
    mc, mcm = tables.content, tables.custom_metadata
    with channel.store.store.engine.begin() as conn:
        conn.execute(
            sa.delete(mc).where(
                mc.c.MESSAGE_ID == message_id,
                mc.c.METADATA_ID == 0,
                mc.c.CONTENT_TYPE.notin_(_SOURCE_KEPT),
            )
        )
        conn.execute(sa.delete(mcm).where(mcm.c.MESSAGE_ID == message_id, mcm.c.METADATA_ID == 0))


async def _recover_pending(channel: DeployedChannel, top: int) -> int:
    """Processed messages with a destination still PENDING: finish its response."""
    from pannier.runtime.channel import MessageContext

    store = channel.store.store
    finished = 0
    for item in await store.run_sync(_processed_pending, channel, top):
        ctx = MessageContext(item["id"], "", item["received"], item["source_map"])
        ctx.channel_map = item["channel_map"]
        try:
            await finish_pending(channel, ctx, item["metadata_id"], item["response"])
        except Exception as exc:
            log.error(
                "channel %s: finishing pending destination %d of message %d failed: %s",
                channel.channel.name,
                item["metadata_id"],
                item["id"],
                exc,
            )
            continue
        finished += 1
    return finished


async def finish_pending(
    channel: DeployedChannel, ctx: MessageContext, metadata_id: int, response_xml: str | None
) -> Status:
    """Run a PENDING destination's response transformer again on its stored response and
    store the outcome; returns the destination's final status. Nothing is sent."""
    from pannier.runtime.channel import fix_status

    destination = next((d for d in channel.destinations if d.model.metaDataId == metadata_id), None)
    content: dict[ContentType, str] = {}
    if destination is None or response_xml is None:
        # The destination was removed, or its response was not stored: nothing to finish
        # from; the message keeps an ERROR rather than being sent a second time.
        response = Response(Status.ERROR, error="pending at restart, its response cannot be read")
    else:
        response, content = await channel.transform_response(
            destination, ctx, parse_response(response_xml)
        )
    queue_enabled = destination is not None and destination.model.queue.queueEnabled
    status = fix_status(response.status, queue_enabled)
    unit = Unit()
    error_code = 0
    if ContentType.RESPONSE_ERROR in content:
        error_code = ContentType.RESPONSE_ERROR.error_code
    elif status == Status.ERROR and response.error:
        error_code = ContentType.PROCESSING_ERROR.error_code
        content[ContentType.PROCESSING_ERROR] = response.error
    storage = channel.storage
    wanted = {
        ContentType.RESPONSE_TRANSFORMED: storage.store_response_transformed,
        ContentType.PROCESSED_RESPONSE: storage.store_processed_response,
    }
    data_type = destination.model.outboundDataType if destination is not None else None
    for content_type, text in content.items():
        if wanted.get(content_type, True):  # errors always
            store_content(
                channel,
                unit,
                ctx.message_id,
                metadata_id,
                content_type,
                text,
                data_type if content_type in wanted else None,
            )
    unit.add(
        UPDATE_CONNECTOR,
        channel.store.update_connector,
        {
            "b_message_id": ctx.message_id,
            "b_metadata_id": metadata_id,
            "STATUS": status.value,
            "ERROR_CODE": error_code,
        },
    )
    await channel.store.store.commit(unit)
    channel.statistics.update(metadata_id, status, Status.PENDING)
    queue = channel.queues.get(metadata_id)
    if queue is not None and status == Status.QUEUED:
        queue.wake()
    return status


def parse_response(text: str) -> Response:
    """Read a RESPONSE content row (XStream ``<response>``, as Mirth and
    :func:`pannier.runtime.xstream.serialize_response` write it)."""
    node = ElementTree.fromstring(text)
    name = (node.findtext("status") or "").strip()
    try:
        status = Status[name]
    except KeyError:
        status = Status.ERROR
    return Response(
        status,
        node.findtext("message") or "",
        node.findtext("statusMessage") or "",
        node.findtext("error") or "",
    )


def _processed_pending(channel: DeployedChannel, top: int) -> list[dict[str, Any]]:
    tables = channel.store.tables
    m, mm, mc = tables.message, tables.connector_message, tables.content
    with channel.store.store.engine.connect() as conn:
        pending = conn.execute(
            sa.select(mm.c.MESSAGE_ID, mm.c.ID, m.c.RECEIVED_DATE)
            .join(m, m.c.ID == mm.c.MESSAGE_ID)
            .where(
                mm.c.STATUS == Status.PENDING.value,
                mm.c.ID > 0,
                mm.c.SERVER_ID == channel.server_id,
                m.c.PROCESSED == sa.true(),
                mm.c.MESSAGE_ID <= top,
            )
            .order_by(mm.c.MESSAGE_ID, mm.c.ID)
        ).all()
        items = []
        for row in pending:
            contents = {
                (c.METADATA_ID, c.CONTENT_TYPE): c.CONTENT
                for c in conn.execute(
                    sa.select(mc.c.METADATA_ID, mc.c.CONTENT_TYPE, mc.c.CONTENT).where(
                        mc.c.MESSAGE_ID == row.MESSAGE_ID,
                        mc.c.METADATA_ID.in_([0, row.ID]),
                        mc.c.CONTENT_TYPE.in_(
                            [
                                int(ContentType.RESPONSE),
                                int(ContentType.CHANNEL_MAP),
                                int(ContentType.SOURCE_MAP),
                            ]
                        ),
                    )
                )
            }
            channel_map = contents.get((row.ID, ContentType.CHANNEL_MAP)) or contents.get(
                (0, ContentType.CHANNEL_MAP)
            )
            items.append(
                {
                    "id": row.MESSAGE_ID,
                    "metadata_id": row.ID,
                    "received": row.RECEIVED_DATE,
                    "response": contents.get((row.ID, ContentType.RESPONSE)),
                    "source_map": xstream.parse_map(
                        contents.get((0, ContentType.SOURCE_MAP)) or ""
                    ),
                    "channel_map": xstream.parse_map(channel_map or ""),
                }
            )
    return items


def _unfinished_page(channel: DeployedChannel, after: int, top: int) -> list[dict[str, Any]]:
    tables = channel.store.tables
    m, mm, mc = tables.message, tables.connector_message, tables.content
    server_id = channel.server_id
    with channel.store.store.engine.connect() as conn:
        heads = conn.execute(
            sa.select(m.c.ID, m.c.RECEIVED_DATE)
            .where(
                m.c.SERVER_ID == server_id,
                m.c.PROCESSED == sa.false(),
                m.c.ID > after,
                m.c.ID <= top,
            )
            .order_by(m.c.ID)
            .limit(PAGE)
        ).all()
        if not heads:
            return []
        ids = [row.ID for row in heads]
        items = {
            row.ID: {
                "id": row.ID,
                "received": row.RECEIVED_DATE,
                "raw": None,
                "source_map": {},
                "destinations": {},
                "pending": {},
            }
            for row in heads
        }
        for row in conn.execute(
            sa.select(mc.c.MESSAGE_ID, mc.c.CONTENT_TYPE, mc.c.CONTENT).where(
                mc.c.MESSAGE_ID.in_(ids),
                mc.c.METADATA_ID == 0,
                mc.c.CONTENT_TYPE.in_([int(ContentType.RAW), int(ContentType.SOURCE_MAP)]),
            )
        ):
            if row.CONTENT_TYPE == ContentType.RAW:
                items[row.MESSAGE_ID]["raw"] = row.CONTENT
            else:
                items[row.MESSAGE_ID]["source_map"] = xstream.parse_map(row.CONTENT or "")
        for row in conn.execute(
            sa.select(mm.c.MESSAGE_ID, mm.c.ID, mm.c.STATUS).where(
                mm.c.MESSAGE_ID.in_(ids), mm.c.ID > 0, mm.c.SERVER_ID == server_id
            )
        ):
            status = Status(row.STATUS.strip())
            items[row.MESSAGE_ID]["destinations"][row.ID] = status
            if status == Status.PENDING:
                items[row.MESSAGE_ID]["pending"][row.ID] = None
        for row in conn.execute(
            sa.select(mc.c.MESSAGE_ID, mc.c.METADATA_ID, mc.c.CONTENT).where(
                mc.c.MESSAGE_ID.in_(ids),
                mc.c.METADATA_ID > 0,
                mc.c.CONTENT_TYPE == int(ContentType.RESPONSE),
            )
        ):
            pending = items[row.MESSAGE_ID]["pending"]
            if row.METADATA_ID in pending:
                pending[row.METADATA_ID] = row.CONTENT
    return [items[i] for i in ids]
