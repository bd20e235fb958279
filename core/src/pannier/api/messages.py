"""Message routes (mirth-compat §7 rows 24-25): browse, send, reprocess and remove messages.

Paths and query names are Mirth's (``/api/channels/{id}/messages?status=E&textSearch=...``);
the JSON follows Mirth's ``Message`` / ``ConnectorMessage`` / ``MessageContent`` field names.
Reading needs any role, sending and reprocessing ``operator`` or above, removing ``manager``
or above. The SQL lives in :mod:`pannier.store.queries`; a request's database work runs in one
worker thread hop (bulk reprocessing reads a page per hop).

Pannier stores content unencrypted; content Java Mirth encrypted is returned as stored, with
``"encrypted": true``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from quart import Blueprint, Response, jsonify, request

from pannier.api import ApiError, current_engine
from pannier.api.auth import requires
from pannier.connectors import ChannelStoppedError, RawMessage
from pannier.runtime import xstream
from pannier.runtime.channel import DeployedChannel
from pannier.store import queries
from pannier.store.queries import MessageFilter, MetaDataCondition
from pannier.store.store import Store, StoreError

blueprint = Blueprint("messages", __name__, url_prefix="/api")

T = TypeVar("T")

READ = ("admin", "manager", "operator", "monitor")
SEND = ("admin", "manager", "operator")
REMOVE = ("admin", "manager")

DEFAULT_LIMIT = 20
MAX_BIGINT = 2**63 - 1
REPROCESS_PAGE = 100
"""Messages one bulk reprocess request handles at most (and reads per worker thread hop)."""

STATUS_LETTERS = {
    "R": "R",
    "F": "F",
    "T": "T",
    "S": "S",
    "Q": "Q",
    "E": "E",
    "P": "P",
    "RECEIVED": "R",
    "FILTERED": "F",
    "TRANSFORMED": "T",
    "SENT": "S",
    "QUEUED": "Q",
    "ERROR": "E",
    "PENDING": "P",
}

#: Mirth's ``MetaDataSearchOperator`` enum names, accepted besides the symbols.
OPERATOR_NAMES = {
    "EQUAL": "=",
    "NOT_EQUAL": "!=",
    "LESS_THAN": "<",
    "LESS_THAN_OR_EQUAL": "<=",
    "GREATER_THAN": ">",
    "GREATER_THAN_OR_EQUAL": ">=",
    "CONTAINS": "CONTAINS",
    "DOES_NOT_CONTAIN": "DOES NOT CONTAIN",
    "STARTS_WITH": "STARTS WITH",
    "DOES_NOT_START_WITH": "DOES NOT START WITH",
    "ENDS_WITH": "ENDS WITH",
    "DOES_NOT_END_WITH": "DOES NOT END WITH",
}


# --- parameters ------------------------------------------------------------------------------


class Params:
    """Request parameters by name, each a list of strings: the query string, or a JSON
    object body (``POST …/_search``) whose values may be scalars or lists."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    @classmethod
    def from_query(cls) -> Params:
        return cls({key: request.args.getlist(key) for key in request.args}).check()

    @classmethod
    async def from_body_or_query(cls) -> Params:
        """The JSON object body when there is one, else the query string. Paging
        (``offset``, ``limit``, ``includeContent``) may also come from the query string."""
        params = cls.from_query()
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        if not body.strip():
            return params
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "the request body is not valid JSON (UTF-8)") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object of filter fields")
        for key, value in data.items():
            items = value if isinstance(value, list) else [value]
            params.values[key] = [_body_text(key, item) for item in items if item is not None]
        return params.check()

    def check(self) -> Params:
        """Refuse a NUL character anywhere: no database column can hold or compare it."""
        for name, values in self.values.items():
            for value in values:
                if "\x00" in value or "\x00" in name:
                    raise ApiError(400, f"{name}: NUL characters are not allowed")
        return self

    def get(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[-1] if values else None

    def getlist(self, name: str) -> list[str]:
        return self.values.get(name, [])


def _body_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and key == "metaDataSearch":
        # Mirth's MetaDataSearchElement: {"columnName", "operator", "value"}
        try:
            return f"{value['columnName']} {value['operator']} {value['value']}"
        except KeyError as exc:
            raise ApiError(
                400,
                f"metaDataSearch {value!r}: missing {exc.args[0]!r} (columnName, operator, value)",
            ) from None
    if isinstance(value, (dict, list)):
        raise ApiError(400, f"{key} = {value!r}: expected a text, number or boolean value")
    return str(value)


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    text = params.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise ApiError(400, f"{name} = {text!r}: expected a whole number") from None
    return _in_range(name, value)


def _in_range(name: str, value: int) -> int:
    """Ids and offsets are BIGINT in the database: refuse what it could not compare."""
    if not 0 <= value <= MAX_BIGINT:
        raise ApiError(400, f"{name} = {value}: expected 0 to {MAX_BIGINT}")
    return value


def _bool(params: Params, name: str) -> bool:
    text = params.get(name)
    if text is None or text.strip() == "":
        return False
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ApiError(400, f"{name} = {text!r}: expected true or false")
    return lowered in ("true", "1", "yes")


def parse_date(name: str, text: str) -> datetime:
    """ISO 8601 (a date, or date and time; without a zone it is UTC) or Mirth's epoch
    milliseconds."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        try:
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise ApiError(400, f"{name} = {text!r}: epoch milliseconds out of range") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            f"{name} = {text!r}: expected an ISO 8601 date (2024-05-01T12:00:00Z) "
            f"or epoch milliseconds",
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_metadata_condition(text: str) -> MetaDataCondition:
    """``COLUMN OPERATOR VALUE``: ``PATIENT_ID = 123``, ``SOURCE STARTS WITH lab``."""
    column, _, rest = text.strip().partition(" ")
    rest = rest.lstrip()
    upper = rest.upper()
    operators = sorted(
        [*queries.METADATA_OPERATORS, *OPERATOR_NAMES], key=len, reverse=True
    )  # longest first: "<=" before "<", "DOES NOT CONTAIN" before "CONTAINS"
    for operator in operators:
        if upper.startswith(operator) and (
            len(rest) == len(operator) or not operator[-1].isalpha() or rest[len(operator)] == " "
        ):
            value = rest[len(operator) :].strip()
            return MetaDataCondition(column, OPERATOR_NAMES.get(operator, operator), value)
    raise ApiError(
        400,
        f"metaDataSearch = {text!r}: expected 'COLUMN OPERATOR VALUE' with an operator among "
        f"{', '.join(queries.METADATA_OPERATORS)}",
    )


def parse_filter(params: Params) -> MessageFilter:
    """The search filter from Mirth's parameter names; a clear 400 for anything malformed."""
    statuses = []
    for text in params.getlist("status"):
        for part in text.split(","):
            letter = STATUS_LETTERS.get(part.strip().upper())
            if letter is None:
                raise ApiError(
                    400, f"status = {part!r}: expected one of R, F, T, S, Q, E, P (or their names)"
                )
            statuses.append(letter)
    start = params.get("startDate")
    end = params.get("endDate")
    flt = MessageFilter(
        min_message_id=_int(params, "minMessageId"),
        max_message_id=_int(params, "maxMessageId"),
        start_date=parse_date("startDate", start) if start else None,
        end_date=parse_date("endDate", end) if end else None,
        statuses=tuple(dict.fromkeys(statuses)),
        text=params.get("textSearch") or None,
        metadata=tuple(parse_metadata_condition(t) for t in params.getlist("metaDataSearch")),
        server_id=params.get("serverId") or None,
    )
    if flt.start_date and flt.end_date and flt.start_date > flt.end_date:
        raise ApiError(400, f"startDate = {start!r} is after endDate = {end!r}")
    return flt


def _paging(params: Params) -> tuple[int, int]:
    maximum = int(current_engine().config["api.max_page_size"])
    offset = _int(params, "offset", 0)
    limit = _int(params, "limit", DEFAULT_LIMIT)
    assert offset is not None and limit is not None
    if offset < 0:
        raise ApiError(400, f"offset = {offset}: expected 0 or more")
    if not 1 <= limit <= maximum:
        raise ApiError(400, f"limit = {limit}: expected 1 to {maximum} (api.max_page_size)")
    return offset, limit


# --- helpers ---------------------------------------------------------------------------------


def _store() -> Store:
    store = current_engine().store
    if store is None:
        raise ApiError(503, "the engine's message store is not open yet")
    return store


async def _db(fn: Callable[..., T], channel_id: str, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(engine, channel_id, ...)`` from :mod:`pannier.store.queries` in one worker
    thread hop; its errors become 4xx answers naming what was wrong."""
    store = _store()
    if "\x00" in channel_id:
        raise ApiError(404, "channel ids have no NUL characters")
    try:
        return await store.run_sync(lambda: fn(store.engine, channel_id, *args, **kwargs))
    except queries.ChannelNotFound:
        raise ApiError(
            404, f"channel {channel_id!r} not found: it has no message tables on this server"
        ) from None
    except queries.QueryError as exc:
        raise ApiError(400, exc.message) from None


async def _deployed(channel_id: str) -> DeployedChannel:
    """The channel, deployed and started here; 404 when unknown, 409 when not running."""
    engine = current_engine()
    deployed = engine.channels.get(channel_id)
    if deployed is None:
        if channel_id in engine.stopped_channels:
            raise ApiError(409, f"channel {channel_id!r} is stopped; start it first")
        if channel_id in engine.deploy_errors:
            raise ApiError(
                409,
                f"channel {channel_id!r} is not deployed: {engine.deploy_errors[channel_id]}",
            )
        await _db(queries.max_message_id, channel_id)  # 404 when the channel is unknown
        raise ApiError(409, f"channel {channel_id!r} is not deployed on this server")
    if deployed.state != "started":
        raise ApiError(
            409,
            f"channel {deployed.channel.name!r} ({channel_id}) is {deployed.state}, not started",
        )
    return deployed


def _response_json(response: Any) -> dict[str, Any] | None:
    if response is None:
        return None
    return {
        "status": response.status.name,
        "message": response.message,
        "statusMessage": response.status_message,
        "error": response.error,
    }


def _add_maps(message: dict[str, Any]) -> dict[str, Any]:
    """Give each map content (stored as XStream XML) its entries as a JSON ``map`` too."""
    for connector in message["connectorMessages"].values():
        for field in (
            "sourceMapContent",
            "connectorMapContent",
            "channelMapContent",
            "responseMapContent",
        ):
            content = connector.get(field)
            if content and not content["encrypted"] and content["content"]:
                try:
                    content["map"] = {
                        k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
                        for k, v in xstream.parse_map(content["content"]).items()
                    }
                except Exception:
                    content["map"] = None  # not a map Pannier can read; the text is still there
    return message


def _reject_unsupported(params: Params) -> None:
    if _bool(params, "overwrite"):
        raise ApiError(
            400,
            "overwrite = true: reprocessing over the original message is not supported; "
            "reprocess without it to store a new message",
        )
    if params.getlist("destinationMetaDataId") or params.getlist("reprocessMetaDataId"):
        raise ApiError(
            400,
            "destinationMetaDataId: sending to a subset of destinations is not supported yet; "
            "leave it out to send to every destination",
        )


# --- browsing --------------------------------------------------------------------------------


@blueprint.get("/channels/<channel_id>/messages")
@requires(*READ)
async def search(channel_id: str) -> Response:
    """Search the channel's messages (newest first), one page."""
    return await _search(channel_id, Params.from_query())


@blueprint.post("/channels/<channel_id>/messages/_search")
@requires(*READ)
async def search_post(channel_id: str) -> Response:
    """Search with the filter as a JSON body; paging in the query string."""
    return await _search(channel_id, await Params.from_body_or_query())


async def _search(channel_id: str, params: Params) -> Response:
    flt = parse_filter(params)
    offset, limit = _paging(params)
    include_content = _bool(params, "includeContent")
    messages = await _db(
        queries.search_messages,
        channel_id,
        flt,
        offset=offset,
        limit=limit,
        include_content=include_content,
    )
    return jsonify([_add_maps(m) for m in messages])


@blueprint.get("/channels/<channel_id>/messages/count")
@requires(*READ)
async def count(channel_id: str) -> Response:
    """How many messages match the filter."""
    flt = parse_filter(Params.from_query())
    return jsonify({"count": await _db(queries.count_messages, channel_id, flt)})


@blueprint.post("/channels/<channel_id>/messages/count/_search")
@requires(*READ)
async def count_post(channel_id: str) -> Response:
    """How many messages match the JSON filter body."""
    flt = parse_filter(await Params.from_body_or_query())
    return jsonify({"count": await _db(queries.count_messages, channel_id, flt)})


@blueprint.get("/channels/<channel_id>/messages/maxMessageId")
@requires(*READ)
async def max_message_id(channel_id: str) -> Response:
    """The highest message id stored for the channel (null when none)."""
    return jsonify({"maxMessageId": await _db(queries.max_message_id, channel_id)})


@blueprint.get("/channels/<channel_id>/messages/<int:message_id>")
@requires(*READ)
async def get_message(channel_id: str, message_id: int) -> Response:
    """One message with all its connector messages, content, maps and metadata."""
    _in_range("messageId", message_id)
    message = await _db(queries.get_message, channel_id, message_id)
    if message is None:
        raise ApiError(404, f"message {message_id} not found in channel {channel_id!r}")
    return jsonify(_add_maps(message))


# --- sending and reprocessing ----------------------------------------------------------------


@blueprint.post("/channels/<channel_id>/messages")
@requires(*SEND)
async def send(channel_id: str) -> Response:
    """Process the request body as a new message received by the channel's source."""
    params = Params.from_query()
    _reject_unsupported(params)
    source_map: dict[str, Any] = {}
    for entry in params.getlist("sourceMapEntry"):
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ApiError(400, f"sourceMapEntry = {entry!r}: expected key=value")
        source_map[key.strip()] = value
    body = await request.get_data(as_text=False)
    assert isinstance(body, bytes)
    content: str | bytes
    try:
        content = body.decode("utf-8")
    except UnicodeDecodeError:
        content = body  # the channel stores a readable copy and errors the message
    deployed = await _deployed(channel_id)
    message_id, response = await _dispatch(deployed, RawMessage(content, source_map))
    statuses = await _db(queries.connector_statuses, channel_id, message_id)
    return jsonify(
        {"messageId": message_id, "statuses": statuses, "response": _response_json(response)}
    )


async def _dispatch(deployed: DeployedChannel, raw: RawMessage) -> tuple[int, Any]:
    try:
        result = await deployed.dispatch(raw)
    except ChannelStoppedError as exc:
        raise ApiError(409, str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, f"the message could not be stored: {exc}") from None
    if result.message_id is None:
        raise ApiError(503, "the message could not be stored")
    return result.message_id, result.response


def _reprocess_raw(stored: queries.StoredRaw) -> RawMessage:
    """The stored RAW as a new message; its source map is the original's plus
    ``reprocessed = true`` and ``originalMessageId``."""
    source_map = xstream.parse_map(stored.source_map) if stored.source_map else {}
    source_map["reprocessed"] = True
    source_map["originalMessageId"] = stored.message_id
    assert stored.raw is not None
    return RawMessage(stored.raw, source_map)


@blueprint.post("/channels/<channel_id>/messages/<int:message_id>/_reprocess")
@requires(*SEND)
async def reprocess_one(channel_id: str, message_id: int) -> Response:
    """Process the message's stored RAW again as a new message (``ORIGINAL_ID`` set)."""
    _reject_unsupported(Params.from_query())
    _in_range("messageId", message_id)
    deployed = await _deployed(channel_id)
    flt = MessageFilter(min_message_id=message_id, max_message_id=message_id)
    page = await _db(queries.raw_messages, channel_id, flt, limit=1)
    if not page:
        raise ApiError(404, f"message {message_id} not found in channel {channel_id!r}")
    if page[0].raw is None:
        raise ApiError(
            409, f"message {message_id} cannot be reprocessed: its RAW content was not stored"
        )
    new_id, response = await _dispatch(deployed, _reprocess_raw(page[0]))
    await _db(queries.set_original_ids, channel_id, [(new_id, message_id)])
    return jsonify(
        {"originalId": message_id, "messageId": new_id, "response": _response_json(response)}
    )


@blueprint.post("/channels/<channel_id>/messages/_reprocess")
@requires(*SEND)
async def reprocess_many(channel_id: str) -> Response:
    """Reprocess the messages matching the filter (query string or JSON body), oldest first,
    at most 100 per request (one after the other, so a request stays short); messages
    stored after the request began (its own output included) are left out."""
    params = await Params.from_body_or_query()
    _reject_unsupported(params)
    flt = parse_filter(params)
    deployed = await _deployed(channel_id)
    budget = min(REPROCESS_PAGE, int(current_engine().config["api.max_page_size"]))
    top = await _db(queries.max_message_id, channel_id)
    if top is None:
        return jsonify({"reprocessed": [], "skipped": [], "more": False})
    top = min(top, top if flt.max_message_id is None else flt.max_message_id)
    flt = replace(flt, max_message_id=top)
    done: list[dict[str, int]] = []
    skipped: list[dict[str, Any]] = []
    after: int | None = None
    more = False
    try:
        while not more:
            page = await _db(
                queries.raw_messages, channel_id, flt, after=after, limit=REPROCESS_PAGE
            )
            if not page:
                break
            for stored in page:
                if len(done) + len(skipped) >= budget:
                    more = True
                    break
                after = stored.message_id
                if stored.raw is None:
                    skipped.append(
                        {"messageId": stored.message_id, "reason": "RAW content not stored"}
                    )
                    continue
                new_id, _response = await _dispatch(deployed, _reprocess_raw(stored))
                done.append({"originalId": stored.message_id, "messageId": new_id})
    except ApiError as exc:
        if done:
            exc.message += f"; {len(done)} message(s) had been reprocessed before this"
        raise
    finally:
        if done:  # even when a later message failed, record the ones already reprocessed
            await _db(
                queries.set_original_ids,
                channel_id,
                [(d["messageId"], d["originalId"]) for d in done],
            )
    answer: dict[str, Any] = {"reprocessed": done, "skipped": skipped, "more": more}
    if more:
        # Where to continue: the same upper bound keeps this request's output out.
        answer["next"] = {"minMessageId": (after or 0) + 1, "maxMessageId": top}
    return jsonify(answer)


# --- removing --------------------------------------------------------------------------------


@blueprint.delete("/channels/<channel_id>/messages/<int:message_id>")
@requires(*REMOVE)
async def remove_one(channel_id: str, message_id: int) -> Response:
    """Remove one message's rows (statistics are left as they are, as in Mirth)."""
    _in_range("messageId", message_id)
    flt = MessageFilter(min_message_id=message_id, max_message_id=message_id)
    running = channel_id in current_engine().channels
    removal = await _db(queries.remove_messages, channel_id, flt, keep_unfinished=running)
    if removal.kept:
        raise ApiError(
            409,
            f"message {message_id} is still being processed or has a queued destination; "
            "stop the channel or wait for it to finish",
        )
    if not removal.removed:
        raise ApiError(404, f"message {message_id} not found in channel {channel_id!r}")
    return jsonify({"removed": 1})


@blueprint.delete("/channels/<channel_id>/messages/_removeAll")
@requires(*REMOVE)
async def remove_all(channel_id: str) -> Response:
    """Remove every message matching the filter in the query string (all of them without
    one). On a deployed channel, messages still in process or queued are kept."""
    flt = parse_filter(Params.from_query())
    running = channel_id in current_engine().channels
    removal = await _db(queries.remove_messages, channel_id, flt, keep_unfinished=running)
    return jsonify({"removed": len(removal.removed), "kept": len(removal.kept)})
