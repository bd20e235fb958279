"""The audit log: logins and changes made through the API, written to Mirth's EVENT table
(``NAME``, ``EVENT_LEVEL`` INFORMATION/WARNING/ERROR, ``OUTCOME`` SUCCESS/FAILURE,
``ATTRIBUTES`` as an XStream map, the user id, the client address, the server id), where Java
Mirth's Administrator shows them too; ``GET /api/events`` pages through them, newest first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from quart import Blueprint, Response, g, jsonify, request

from pannier.api import ApiError, current_engine
from pannier.api.auth import requires
from pannier.runtime import xstream
from pannier.store.store import Store

blueprint = Blueprint("events", __name__, url_prefix="/api")
log = logging.getLogger("pannier.api.events")

MAX_PAGE = 1000


def _insert(store: Store, row: dict[str, Any]) -> None:
    table = store.metadata.tables["EVENT"]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table).values(**row))


async def record_event(
    name: str,
    *,
    outcome: str = "SUCCESS",
    level: str = "INFORMATION",
    attributes: Mapping[str, Any] | None = None,
    user_id: int | None = None,
) -> None:
    """Write one EVENT row for the current request; a failure is logged, never raised (the
    change it describes has happened)."""
    engine = current_engine()
    store = engine.store
    assert store is not None
    if user_id is None:
        user = g.get("pannier_user")
        user_id = user.user_id if user is not None else 0
    row = {
        "DATE_CREATED": store.now(),
        "NAME": name,
        "EVENT_LEVEL": level,
        "OUTCOME": outcome,
        "ATTRIBUTES": xstream.serialize_map({k: str(v) for k, v in (attributes or {}).items()}),
        "USER_ID": user_id,
        "IP_ADDRESS": (request.remote_addr or "")[:40],
        "SERVER_ID": engine.server_id,
    }
    try:
        await store.run_sync(_insert, store, row)
    except Exception as exc:
        log.error("audit event %r not written: %s", name, exc)


def _read(store: Store, offset: int, limit: int, name: str | None) -> list[dict[str, Any]]:
    table = store.metadata.tables["EVENT"]
    query = sa.select(table).order_by(table.c.ID.desc()).offset(offset).limit(limit)
    if name:
        query = query.where(table.c.NAME == name)
    with store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    events = []
    for row in rows:
        try:
            attributes = xstream.parse_map(row["ATTRIBUTES"]) if row["ATTRIBUTES"] else {}
        except Exception:
            attributes = {"raw": row["ATTRIBUTES"]}
        created = row["DATE_CREATED"]
        events.append(
            {
                "id": row["ID"],
                "dateTime": created.isoformat() if created is not None else None,
                "name": row["NAME"],
                "level": row["EVENT_LEVEL"],
                "outcome": row["OUTCOME"],
                "attributes": attributes,
                "userId": row["USER_ID"],
                "ipAddress": row["IP_ADDRESS"],
                "serverId": row["SERVER_ID"],
            }
        )
    return events


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within ``low..high``; 400 naming it otherwise."""
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} = {text!r}: expected a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} = {value}: expected {low} to {high}")
    return value


@blueprint.get("/events")
@requires("manager")
async def list_events() -> Response:
    """Audit events, newest first (query: offset, limit up to 1000, name)."""
    offset = int_arg("offset", 0, 0, 2**31 - 1)
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    store = current_engine().store
    assert store is not None
    events = await store.run_sync(_read, store, offset, limit, request.args.get("name"))
    return jsonify({"offset": offset, "limit": limit, "events": events})
