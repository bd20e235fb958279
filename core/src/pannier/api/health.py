"""Health probes for orchestrators: no login, no ``X-Requested-With`` needed.

``/api/health/live`` answers while the process serves requests; ``/api/health/startup`` once
the engine has deployed its channels; ``/api/health`` (ready) when the database answers,
every channel deployed and the engine is not draining — SIGTERM turns it to 503 before the
drain begins, so a load balancer stops sending work first.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from quart import Blueprint, Response, jsonify

from pannier.api import ApiError, current_engine
from pannier.api.auth import F, public

blueprint = Blueprint("health", __name__, url_prefix="/api/health")


def probe(view: F) -> F:
    """A public view exempt from the ``X-Requested-With`` rule (probes cannot always set it)."""
    view.pannier_probe = True  # type: ignore[attr-defined]
    return public(view)


def _answer(ok: bool, body: dict[str, Any]) -> Response:
    response = jsonify({"status": "UP" if ok else "DOWN", **body})
    response.status_code = 200 if ok else 503
    return response


def _ping(engine: Any) -> None:
    with engine.store.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


@blueprint.get("")
@probe
async def ready() -> Response:
    """Readiness: database reachable, channels deployed, not draining."""
    engine = current_engine()
    reasons = []
    if engine.draining:
        reasons.append("the engine is draining (shutting down)")
    elif not engine.ready:
        reasons.append("the engine has not finished starting")
    try:
        assert engine.store is not None
        await engine.store.run_sync(_ping, engine)
    except Exception as exc:
        reasons.append(f"database unreachable: {type(exc).__name__}")
    for channel_id, error in sorted(engine.deploy_errors.items()):
        reasons.append(f"channel {channel_id} failed to deploy: {error}")
    return _answer(not reasons, {"reasons": reasons})


@blueprint.get("/live")
@probe
async def live() -> Response:
    """Liveness: the process answers."""
    return _answer(True, {})


@blueprint.get("/startup")
@probe
async def startup() -> Response:
    """Start-up: channels have been deployed once."""
    engine = current_engine()
    started = engine.ready or engine.draining
    reasons = [] if started else ["the engine has not finished starting"]
    return _answer(started, {"reasons": reasons})


@blueprint.get("/channels/<channel_id>")
@probe
async def channel(channel_id: str) -> Response:
    """One channel: 200 when started, 503 when deployed but not started or failed to deploy."""
    engine = current_engine()
    state = engine.channel_state(channel_id)
    if state is None:
        error = engine.deploy_errors.get(channel_id)
        if error is None:
            raise ApiError(404, f"no channel with id {channel_id!r} is deployed")
        return _answer(False, {"channelId": channel_id, "state": "UNDEPLOYED", "reasons": [error]})
    ok = state == "STARTED"
    reasons = [] if ok else [f"channel is {state}"]
    return _answer(ok, {"channelId": channel_id, "state": state, "reasons": reasons})
