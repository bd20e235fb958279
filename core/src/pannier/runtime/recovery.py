"""Recovery at channel start: finish this server's messages that a crash left unfinished.

As Mirth's ``RecoveryTask`` (mirth-compat §3.5), only rows whose ``SERVER_ID`` is this
engine's are touched, up to the highest message id present at start, in ascending message id
order, a page at a time:

* a message whose source is still RECEIVED (its "received" transaction committed, its
  "processed" one did not) is processed again from its stored RAW content;
* a message Java Mirth left unfinished (``PROCESSED = FALSE``, source past RECEIVED) has its
  destinations in RECEIVED or PENDING sent again and the others kept as they are;
* then the message is marked processed, with its response stored.

Recovery never marks a message errored just because it was interrupted. It is skipped, as in
Mirth, when the storage mode keeps no recovery data (RAW, METADATA, DISABLED).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pannier.model.status import ContentType, Status
from pannier.runtime import xstream

if TYPE_CHECKING:
    from pannier.runtime.channel import DeployedChannel

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
    if finished:
        log.info("channel %s: recovered %d unfinished message(s)", channel.channel.name, finished)
    return finished


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
            items[row.MESSAGE_ID]["destinations"][row.ID] = Status(row.STATUS.strip())
    return [items[i] for i in ids]
