"""Channel statistics and queue depths as Mirth's dashboard shows them (``DashboardStatus``).

Statistics are ``D_MS<n>`` summed over every server's rows, plus the counts this engine has
not flushed yet (flushes happen about once a second), so a status read right after a message
already counts it. ``queued`` is the number of connector messages in status Q.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pannier.model.channel import Channel
from pannier.model.status import Status
from pannier.store import schema
from pannier.store.statistics import COLUMNS, Deltas
from pannier.store.store import Store

if TYPE_CHECKING:
    from pannier.engine import Engine

STAT_NAMES = ("RECEIVED", "FILTERED", "SENT", "ERROR")

Counts = dict[int | None, dict[str, int]]


def _local_id(store: Store, channel_id: str) -> int | None:
    table = store.metadata.tables["D_CHANNELS"]
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.select(table.c.LOCAL_CHANNEL_ID).where(table.c.CHANNEL_ID == channel_id)
        ).scalar()
    return None if value is None else int(value)


def read_counts(store: Store, channel_id: str) -> tuple[Counts, Counts, dict[int, int]]:
    """(current, lifetime, queued per metadata id) from the channel's tables."""
    local_id = _local_id(store, channel_id)
    current: Counts = {}
    lifetime: Counts = {}
    queued: dict[int, int] = {}
    if local_id is None:
        return current, lifetime, queued
    tables = schema.ChannelTables(local_id)
    stats, messages = tables.statistics, tables.connector_message
    with store.engine.connect() as conn:
        for row in conn.execute(sa.select(stats)).mappings():
            key = row["METADATA_ID"]
            key = None if key is None else int(key)
            for name in STAT_NAMES:
                current.setdefault(key, dict.fromkeys(STAT_NAMES, 0))[name] += int(row[name] or 0)
                lifetime.setdefault(key, dict.fromkeys(STAT_NAMES, 0))[name] += int(
                    row[f"{name}_LIFETIME"] or 0
                )
        for metadata_id, count in conn.execute(
            sa.select(messages.c.ID, sa.func.count())
            .where(messages.c.STATUS == Status.QUEUED.value)
            .group_by(messages.c.ID)
        ):
            queued[int(metadata_id)] = int(count)
    return current, lifetime, queued


def add_pending(counts: Counts, pending: Deltas) -> None:
    for key, values in pending.items():
        row = counts.setdefault(key, dict.fromkeys(STAT_NAMES, 0))
        for status, delta in values.items():
            row[COLUMNS[status]] = max(0, row[COLUMNS[status]] + delta)


def clear_counts(store: Store, channel_id: str, names: list[str]) -> None:
    """Mirth's clear statistics: the current counts go to 0, lifetime counts stay."""
    local_id = _local_id(store, channel_id)
    if local_id is None or not names:
        return
    table = schema.ChannelTables(local_id).statistics
    with store.engine.begin() as conn:
        conn.execute(sa.update(table).values(**dict.fromkeys(names, 0)))


async def channel_status(
    engine: Engine, channel: Channel, state: str, revision_delta: int = 0
) -> dict[str, Any]:
    """One channel's ``DashboardStatus`` with its connectors as ``childStatuses``."""
    store = engine.store
    assert store is not None
    current, lifetime, queued = await store.run_sync(read_counts, store, channel.id)
    deployed = engine.channels.get(channel.id)
    if deployed is not None:
        pending = deployed.statistics.drain()
        deployed.statistics.restore(pending)
        add_pending(current, pending)
        add_pending(lifetime, pending)
    zero = dict.fromkeys(STAT_NAMES, 0)
    children = []
    stopped = {m for m, q in deployed.queues.items() if q.stopped} if deployed else set()
    connectors = [channel.source, *channel.destinations]
    for connector in connectors:
        mid = connector.metaDataId
        children.append(
            {
                "channelId": channel.id,
                "name": connector.name or ("Source" if mid == 0 else f"Destination {mid}"),
                "state": state if connector.enabled and mid not in stopped else "STOPPED",
                "statistics": current.get(mid, zero),
                "lifetimeStatistics": lifetime.get(mid, zero),
                "metaDataId": mid,
                "queueEnabled": bool(mid and connector.queue.queueEnabled)
                or (mid == 0 and not connector.source.respondAfterProcessing),
                "queued": queued.get(mid, 0),
                "waitForPrevious": bool(mid and connector.waitForPrevious),
                "statusType": "CONNECTOR",
                "transportName": connector.transportName,
            }
        )
    return {
        "channelId": channel.id,
        "name": channel.name,
        "state": state,
        "deployedRevisionDelta": revision_delta,
        "deployedDate": deployed.deployed_at.isoformat() if deployed is not None else None,
        "codeTemplatesChanged": False,
        "statistics": current.get(None, zero),
        "lifetimeStatistics": lifetime.get(None, zero),
        "childStatuses": children,
        "metaDataId": None,
        "queueEnabled": any(c["queueEnabled"] for c in children),
        "queued": sum(queued.values()),
        "waitForPrevious": False,
        "statusType": "CHANNEL",
    }
