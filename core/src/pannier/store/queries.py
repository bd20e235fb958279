"""Read-side SQL for the message browser: search, count, one message in full, removal.

Every function here is blocking and meant to run whole in one worker thread
(``Store.run_sync``): it opens its own connection, finds the channel's tables through
``D_CHANNELS`` and answers with plain, JSON-ready values.

Queries are shaped for the indexes Mirth's tables have: the message id range is the first
condition on ``D_Mn`` (its primary key), every other condition is an ``EXISTS`` probe on a
child table keyed by ``MESSAGE_ID`` (``D_MMn``, ``D_MCn``, ``D_MCMn`` all lead with it), pages
are ``ORDER BY ID DESC`` with ``LIMIT``/``OFFSET`` (newest first, as Mirth's browser), and
content is read or searched only when asked for. Statistics (``D_MSn``) are never touched:
removing messages leaves the counts as they were, as in Mirth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import quoted_name

from pannier.model.status import ContentType, Status
from pannier.store import schema

#: ``metaDataSearch`` operators, as Mirth's ``MetaDataSearchOperator`` spells them.
METADATA_OPERATORS = (
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "CONTAINS",
    "DOES NOT CONTAIN",
    "STARTS WITH",
    "DOES NOT START WITH",
    "ENDS WITH",
    "DOES NOT END WITH",
)

#: Mirth's ``ConnectorMessage`` field for each content type.
CONTENT_FIELDS = {
    ContentType.RAW: "raw",
    ContentType.PROCESSED_RAW: "processedRaw",
    ContentType.TRANSFORMED: "transformed",
    ContentType.ENCODED: "encoded",
    ContentType.SENT: "sent",
    ContentType.RESPONSE: "response",
    ContentType.RESPONSE_TRANSFORMED: "responseTransformed",
    ContentType.PROCESSED_RESPONSE: "processedResponse",
    ContentType.CONNECTOR_MAP: "connectorMapContent",
    ContentType.CHANNEL_MAP: "channelMapContent",
    ContentType.RESPONSE_MAP: "responseMapContent",
    ContentType.PROCESSING_ERROR: "processingErrorContent",
    ContentType.POSTPROCESSOR_ERROR: "postProcessorErrorContent",
    ContentType.RESPONSE_ERROR: "responseErrorContent",
    ContentType.SOURCE_MAP: "sourceMapContent",
}

#: Messages removed per transaction by :func:`remove_messages`.
REMOVE_PAGE = 500


class QueryError(Exception):
    """The request cannot be answered as asked; ``parameter`` names what was wrong."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


class ChannelNotFound(Exception):
    """No ``D_CHANNELS`` row for the channel id: it has never been deployed here."""


@dataclass(frozen=True)
class MetaDataCondition:
    """One ``metaDataSearch`` condition: ``column operator value``."""

    column: str
    operator: str
    value: str


@dataclass(frozen=True)
class MessageFilter:
    """What a message search matches; every field left empty matches everything.

    Dates are timezone-aware. ``statuses`` are status letters (any connector of the message
    in one of them matches); ``text`` is searched in every content row of the message;
    ``metadata`` conditions must hold together on one connector's custom metadata row.
    """

    min_message_id: int | None = None
    max_message_id: int | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    statuses: tuple[str, ...] = ()
    text: str | None = None
    metadata: tuple[MetaDataCondition, ...] = ()
    server_id: str | None = None


# --- finding a channel's tables ------------------------------------------------------------------


_CORE = sa.MetaData()
schema.core_tables(_CORE)
_CHANNELS = _CORE.tables["D_CHANNELS"]


def local_channel_id(conn: Connection, channel_id: str) -> int | None:
    """The channel's ``LOCAL_CHANNEL_ID`` (which names its tables), or None."""
    value = conn.execute(
        sa.select(_CHANNELS.c.LOCAL_CHANNEL_ID).where(_CHANNELS.c.CHANNEL_ID == channel_id)
    ).scalar()
    return None if value is None else int(value)


def _tables(conn: Connection, channel_id: str) -> schema.ChannelTables:
    local_id = local_channel_id(conn, channel_id)
    if local_id is None:
        raise ChannelNotFound(channel_id)
    return schema.ChannelTables(int(local_id))


# --- the filter as SQL ---------------------------------------------------------------------------


def _stored_date(value: datetime, dialect: str) -> datetime:
    """A filter date as the column stores it: UTC, naive except on PostgreSQL."""
    utc = value.astimezone(UTC)
    return utc if dialect == "postgresql" else utc.replace(tzinfo=None)


def _metadata_table(conn: Connection, tables: schema.ChannelTables) -> sa.Table:
    """``D_MCMn`` with its custom columns and their real types (reflected), so comparisons
    bind values of the column's type on every database."""
    name = str(tables.custom_metadata.name)
    columns = sa.inspect(conn).get_columns(schema.stored_name(name, conn.dialect.name))
    return sa.Table(
        schema.ident(name),
        sa.MetaData(),
        *(
            sa.Column(
                schema.ident(c["name"].upper())
                if c["name"].upper() in ("MESSAGE_ID", "METADATA_ID")
                else quoted_name(c["name"], quote=True),
                c["type"],
            )
            for c in columns
        ),
    )


def _typed_value(column: sa.Column[Any], condition: MetaDataCondition) -> Any:
    """The condition's value as the column's Python type; a clear error when it is not one."""
    value = condition.value
    where = f"metaDataSearch {condition.column} {condition.operator} {value!r}"
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if condition.operator not in ("=", "!=", "<", "<=", ">", ">="):
        if python_type is not str:
            raise QueryError(
                "metaDataSearch",
                f"{where}: {condition.operator} works on text columns only; "
                f"{condition.column} is {python_type.__name__}",
            )
        return value
    if python_type is bool:
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise QueryError("metaDataSearch", f"{where}: expected true or false")
        return lowered in ("true", "1")
    if python_type in (Decimal, int, float):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise QueryError("metaDataSearch", f"{where}: expected a number") from None
    if python_type is datetime:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise QueryError("metaDataSearch", f"{where}: expected an ISO 8601 date") from None
        return parsed.replace(tzinfo=None)  # Mirth's TIMESTAMP columns keep no time zone
    return value


def _metadata_clause(column: sa.Column[Any], condition: MetaDataCondition) -> Any:
    """The condition as SQL. The text operators ignore case on every database (MySQL's
    collation would anyway; PostgreSQL's LIKE would not), comparisons do not."""
    value = _typed_value(column, condition)
    op = condition.operator
    text: Any = column
    clauses = {
        "=": lambda: text == value,
        "!=": lambda: text != value,
        "<": lambda: text < value,
        "<=": lambda: text <= value,
        ">": lambda: text > value,
        ">=": lambda: text >= value,
        "CONTAINS": lambda: text.icontains(value, autoescape=True),
        "DOES NOT CONTAIN": lambda: sa.not_(text.icontains(value, autoescape=True)),
        "STARTS WITH": lambda: text.istartswith(value, autoescape=True),
        "DOES NOT START WITH": lambda: sa.not_(text.istartswith(value, autoescape=True)),
        "ENDS WITH": lambda: text.iendswith(value, autoescape=True),
        "DOES NOT END WITH": lambda: sa.not_(text.iendswith(value, autoescape=True)),
    }
    return clauses[op]()


def _conditions(conn: Connection, tables: schema.ChannelTables, flt: MessageFilter) -> list[Any]:
    """WHERE conditions on ``D_Mn``: the id range first, then EXISTS probes on child tables
    (each leads with ``MESSAGE_ID``, the first column of their keys)."""
    m, mm, mc = tables.message, tables.connector_message, tables.content
    dialect = conn.dialect.name
    where: list[Any] = []
    if flt.min_message_id is not None:
        where.append(m.c.ID >= flt.min_message_id)
    if flt.max_message_id is not None:
        where.append(m.c.ID <= flt.max_message_id)
    if flt.start_date is not None:
        where.append(m.c.RECEIVED_DATE >= _stored_date(flt.start_date, dialect))
    if flt.end_date is not None:
        where.append(m.c.RECEIVED_DATE <= _stored_date(flt.end_date, dialect))
    if flt.server_id:
        where.append(m.c.SERVER_ID == flt.server_id)
    if flt.statuses:
        where.append(
            sa.exists().where(mm.c.MESSAGE_ID == m.c.ID, mm.c.STATUS.in_(list(flt.statuses)))
        )
    if flt.metadata:
        mcm = _metadata_table(conn, tables)
        by_name = {str(c.name).upper(): c for c in mcm.c}
        clauses = [mcm.c.MESSAGE_ID == m.c.ID]
        for condition in flt.metadata:
            column = by_name.get(condition.column.upper())
            if column is None or condition.column.upper() in ("MESSAGE_ID", "METADATA_ID"):
                known = sorted(
                    str(c.name) for c in mcm.c if str(c.name) not in ("MESSAGE_ID", "METADATA_ID")
                )
                raise QueryError(
                    "metaDataSearch",
                    f"metaDataSearch {condition.column!r}: the channel has no custom metadata "
                    f"column of that name; it has: {', '.join(known) or 'none'}",
                )
            clauses.append(_metadata_clause(column, condition))
        where.append(sa.exists().where(*clauses))
    if flt.text:
        where.append(
            sa.exists().where(
                mc.c.MESSAGE_ID == m.c.ID, mc.c.CONTENT.icontains(flt.text, autoescape=True)
            )
        )
    return where


# --- reading -------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    """A stored timestamp as ISO 8601 in UTC (naive values are UTC, as Pannier writes them)."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite may hand back text for a column it did not type
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return bool(int.from_bytes(value, "big"))  # MySQL BIT(1)
    return value


def _status_name(letter: str) -> str:
    letter = (letter or "").strip()
    try:
        return Status(letter).name
    except ValueError:
        return letter


def _page_details(
    conn: Connection,
    tables: schema.ChannelTables,
    channel_id: str,
    heads: Sequence[Any],
    include_content: bool,
) -> list[dict[str, Any]]:
    """Messages (with their connector messages, custom metadata and, if asked, content) for
    the ``D_Mn`` rows ``heads``, in the order given."""
    if not heads:
        return []
    mm, mc = tables.connector_message, tables.content
    ids = [row.ID for row in heads]
    messages: dict[int, dict[str, Any]] = {}
    for row in heads:
        messages[row.ID] = {
            "messageId": row.ID,
            "serverId": row.SERVER_ID,
            "channelId": channel_id,
            "receivedDate": _iso(row.RECEIVED_DATE),
            "processed": bool(row.PROCESSED),
            "originalId": row.ORIGINAL_ID,
            "importId": row.IMPORT_ID,
            "importChannelId": row.IMPORT_CHANNEL_ID,
            "connectorMessages": {},
        }
    for row in conn.execute(
        sa.select(mm).where(mm.c.MESSAGE_ID.in_(ids)).order_by(mm.c.MESSAGE_ID, mm.c.ID)
    ):
        messages[row.MESSAGE_ID]["connectorMessages"][str(row.ID)] = {
            "messageId": row.MESSAGE_ID,
            "metaDataId": row.ID,
            "channelId": channel_id,
            "connectorName": row.CONNECTOR_NAME,
            "serverId": row.SERVER_ID,
            "receivedDate": _iso(row.RECEIVED_DATE),
            "status": _status_name(row.STATUS),
            "sendAttempts": row.SEND_ATTEMPTS,
            "sendDate": _iso(row.SEND_DATE),
            "responseDate": _iso(row.RESPONSE_DATE),
            "errorCode": row.ERROR_CODE,
            "chainId": row.CHAIN_ID,
            "orderId": row.ORDER_ID,
            "metaDataMap": {},
        }
    metadata_name = schema.ident(str(tables.custom_metadata.name))
    result = conn.execute(
        sa.select(sa.text("*"))
        .select_from(sa.table(metadata_name))
        .where(sa.column(schema.ident("MESSAGE_ID")).in_(ids))
    )
    keys = list(result.keys())
    for values in result:
        row_map = dict(zip(keys, values, strict=True))
        message_id = row_map.pop(next(k for k in keys if k.upper() == "MESSAGE_ID"))
        metadata_id = row_map.pop(next(k for k in keys if k.upper() == "METADATA_ID"))
        connector = messages[message_id]["connectorMessages"].get(str(metadata_id))
        if connector is not None:
            connector["metaDataMap"] = {k: _json_value(v) for k, v in row_map.items()}
    if include_content:
        for row in conn.execute(
            sa.select(mc).where(mc.c.MESSAGE_ID.in_(ids)).order_by(mc.c.CONTENT_TYPE)
        ):
            connector = messages[row.MESSAGE_ID]["connectorMessages"].get(str(row.METADATA_ID))
            if connector is None:
                continue
            try:
                content_type = ContentType(row.CONTENT_TYPE)
            except ValueError:
                continue
            connector[CONTENT_FIELDS[content_type]] = {
                "contentType": content_type.name,
                "content": row.CONTENT,
                "dataType": row.DATA_TYPE,
                "encrypted": bool(row.IS_ENCRYPTED),
            }
    return [messages[i] for i in ids]


def search_messages(
    engine: Engine,
    channel_id: str,
    flt: MessageFilter,
    *,
    offset: int = 0,
    limit: int = 20,
    include_content: bool = False,
) -> list[dict[str, Any]]:
    """One page of the channel's messages matching ``flt``, newest first."""
    with engine.connect() as conn:
        tables = _tables(conn, channel_id)
        m = tables.message
        heads = conn.execute(
            sa.select(m)
            .where(*_conditions(conn, tables, flt))
            .order_by(m.c.ID.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return _page_details(conn, tables, channel_id, heads, include_content)


def count_messages(engine: Engine, channel_id: str, flt: MessageFilter) -> int:
    """How many of the channel's messages match ``flt``."""
    with engine.connect() as conn:
        tables = _tables(conn, channel_id)
        m = tables.message
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(m).where(*_conditions(conn, tables, flt))
            ).scalar_one()
        )


def max_message_id(engine: Engine, channel_id: str) -> int | None:
    """The highest message id the channel has stored (None when it has none)."""
    with engine.connect() as conn:
        m = _tables(conn, channel_id).message
        value = conn.execute(sa.select(sa.func.max(m.c.ID))).scalar()
        return None if value is None else int(value)


def get_message(engine: Engine, channel_id: str, message_id: int) -> dict[str, Any] | None:
    """The message with every connector message, all their content and custom metadata, and
    its attachments' ids, types and sizes (not their bytes); None when there is no such
    message."""
    with engine.connect() as conn:
        tables = _tables(conn, channel_id)
        m, ma = tables.message, tables.attachment
        head = conn.execute(sa.select(m).where(m.c.ID == message_id)).first()
        if head is None:
            return None
        (message,) = _page_details(conn, tables, channel_id, [head], include_content=True)
        message["attachments"] = [
            {"id": row.ID, "type": row.TYPE, "size": int(row.size or 0)}
            for row in conn.execute(
                sa.select(ma.c.ID, ma.c.TYPE, sa.func.sum(ma.c.ATTACHMENT_SIZE).label("size"))
                .where(ma.c.MESSAGE_ID == message_id)
                .group_by(ma.c.ID, ma.c.TYPE)
                .order_by(ma.c.ID)
            )
        ]
        return message


def connector_statuses(engine: Engine, channel_id: str, message_id: int) -> dict[str, str]:
    """``{metaDataId: status name}`` of one message's connector messages."""
    with engine.connect() as conn:
        mm = _tables(conn, channel_id).connector_message
        return {
            str(row.ID): _status_name(row.STATUS)
            for row in conn.execute(
                sa.select(mm.c.ID, mm.c.STATUS)
                .where(mm.c.MESSAGE_ID == message_id)
                .order_by(mm.c.ID)
            )
        }


@dataclass(frozen=True)
class StoredRaw:
    """What reprocessing needs of one message: its RAW content and source map (XStream
    text), either None when the storage mode did not keep it."""

    message_id: int
    raw: str | None
    source_map: str | None


def raw_messages(
    engine: Engine,
    channel_id: str,
    flt: MessageFilter,
    *,
    after: int | None = None,
    limit: int = 100,
) -> list[StoredRaw]:
    """A page of the messages matching ``flt`` with id greater than ``after``, oldest first
    (the order to reprocess them in), with their source RAW content and source map."""
    with engine.connect() as conn:
        tables = _tables(conn, channel_id)
        m, mc = tables.message, tables.content
        where = _conditions(conn, tables, flt)
        if after is not None:
            where.insert(0, m.c.ID > after)
        ids = list(
            conn.execute(sa.select(m.c.ID).where(*where).order_by(m.c.ID).limit(limit)).scalars()
        )
        if not ids:
            return []
        found: dict[int, dict[int, str]] = {i: {} for i in ids}
        for row in conn.execute(
            sa.select(mc.c.MESSAGE_ID, mc.c.CONTENT_TYPE, mc.c.CONTENT).where(
                mc.c.MESSAGE_ID.in_(ids),
                mc.c.METADATA_ID == 0,
                mc.c.CONTENT_TYPE.in_([int(ContentType.RAW), int(ContentType.SOURCE_MAP)]),
            )
        ):
            found[row.MESSAGE_ID][row.CONTENT_TYPE] = row.CONTENT
        return [
            StoredRaw(i, found[i].get(ContentType.RAW), found[i].get(ContentType.SOURCE_MAP))
            for i in ids
        ]


def set_original_ids(engine: Engine, channel_id: str, pairs: Iterable[tuple[int, int]]) -> None:
    """Record ``D_Mn.ORIGINAL_ID`` for reprocessed messages: ``(new id, original id)``."""
    pairs = list(pairs)
    if not pairs:
        return
    with engine.begin() as conn:
        m = _tables(conn, channel_id).message
        conn.execute(
            sa.update(m)
            .where(m.c.ID == sa.bindparam("b_id"))
            .values(ORIGINAL_ID=sa.bindparam("b_original")),
            [{"b_id": new, "b_original": original} for new, original in pairs],
        )


# --- removing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """What :func:`remove_messages` did: ids removed, and ids kept because they were still
    being processed or queued."""

    removed: list[int]
    kept: list[int]


def _unfinished(tables: schema.ChannelTables) -> Any:
    """A message the running channel is still working on: not processed yet, or with a
    destination waiting in its queue."""
    m, mm = tables.message, tables.connector_message
    return sa.or_(
        m.c.PROCESSED == sa.false(),
        sa.exists().where(mm.c.MESSAGE_ID == m.c.ID, mm.c.STATUS == Status.QUEUED.value),
    )


def remove_messages(
    engine: Engine,
    channel_id: str,
    flt: MessageFilter,
    *,
    keep_unfinished: bool,
) -> Removal:
    """Delete the messages matching ``flt`` from ``D_MCMn``, ``D_MCn``, ``D_MAn``, ``D_MMn``
    and ``D_Mn`` (children first), :data:`REMOVE_PAGE` messages per transaction. With
    ``keep_unfinished`` (the channel is deployed) messages still in process or queued are
    kept and listed, so a running channel never loses rows it is about to update."""
    removed: list[int] = []
    kept: list[int] = []
    with engine.connect() as conn:
        tables = _tables(conn, channel_id)
        m = tables.message
        where = _conditions(conn, tables, flt)
        conn.rollback()  # end the reading transaction; each page writes in its own
        after: int | None = None
        while True:
            page_where = list(where) if after is None else [m.c.ID > after, *where]
            with conn.begin():
                unfinished = _unfinished(tables).label("unfinished")
                rows = conn.execute(
                    sa.select(m.c.ID, unfinished)
                    .where(*page_where)
                    .order_by(m.c.ID)
                    .limit(REMOVE_PAGE)
                ).all()
                if not rows:
                    break
                after = rows[-1].ID
                doomed = []
                for row in rows:
                    if keep_unfinished and row.unfinished:
                        kept.append(row.ID)
                    else:
                        doomed.append(row.ID)
                _delete(conn, tables, doomed)
                removed.extend(doomed)
    return Removal(removed, kept)


def _delete(conn: Connection, tables: schema.ChannelTables, ids: list[int]) -> None:
    if not ids:
        return
    for table in (
        tables.custom_metadata,
        tables.content,
        tables.attachment,
        tables.connector_message,
    ):
        conn.execute(sa.delete(table).where(table.c.MESSAGE_ID.in_(ids)))
    conn.execute(sa.delete(tables.message).where(tables.message.c.ID.in_(ids)))
