"""Channel routes (mirth-compat §7 rows 11-23): definitions, deployment, state, statistics.

Where a channel's definition comes from, highest first: a channel file the config names
(edit the file, not the API: changing it here answers 409), then the ``CHANNEL`` table
(channels created through the API, or by Java Mirth), then what is deployed. Channels are JSON
in the channel-file shape (docs/channels.md), or Mirth XML with ``Accept:`` /
``Content-Type: application/xml``.
"""

from __future__ import annotations

import tomllib
import uuid
from typing import Any

from quart import Blueprint, Response, jsonify, request

from pannier.api import ApiError, current_engine, refuse_with_workers
from pannier.api import library as lib
from pannier.api.auth import requires
from pannier.api.dashboard import STAT_NAMES, channel_status, clear_counts
from pannier.api.events import record_event
from pannier.engine import DeployError
from pannier.model.channel import Channel
from pannier.model.channel_file import ChannelFormatError, channel_from_dict
from pannier.model.mirth_xml import (
    MirthXmlError,
    channel_from_xml,
    channel_to_toml,
    channel_to_xml,
    mirth_extra,
)
from pannier.store.store import Store

blueprint = Blueprint("channels", __name__, url_prefix="/api/channels")

XML = "application/xml"

SAME_ON_EVERY_WORKER = frozenset({"channels.clear_statistics"})
"""Changing routes whose effect is in the database, so reach every worker of the node."""


@blueprint.before_request
async def _one_worker_only() -> None:
    """Deploying, starting, stopping... changes the engine process that serves the API only:
    with several workers (``server.workers``) those requests answer 409."""
    if request.method != "GET" and request.endpoint not in SAME_ON_EVERY_WORKER:
        refuse_with_workers(f"{request.method} {request.path}")


# --- the channel library ----------------------------------------------------------------------


def _store() -> Store:
    store = current_engine().store
    assert store is not None
    return store


async def _library() -> dict[str, tuple[Channel, str]]:
    """Every known channel: id → (definition, origin ``file`` | ``api`` | ``database``)."""
    engine = current_engine()
    store = _store()
    found: dict[str, tuple[Channel, str]] = {}
    for channel_id in list(engine.channels) + list(engine.stopped_channels):
        model = engine.deployed_model(channel_id)
        if model is not None:
            found[channel_id] = (model, "database")
    stored = await store.run_sync(lib.stored_definitions, store)
    metadata = await store.run_sync(lib.channel_metadata, store)
    for channel_id, channel in stored.items():
        origin = "api" if metadata.get(channel_id, {}).get("createdBy") == "api" else "database"
        found[channel_id] = (channel, origin)
    try:
        for channel in engine.channels_from_config():
            found[channel.id] = (channel, "file")
    except Exception:  # a broken file is the config's problem, reported at start
        pass
    return found


async def _get(channel_id: str) -> tuple[Channel, str]:
    found = (await _library()).get(channel_id)
    if found is None:
        raise ApiError(404, f"no channel with id {channel_id!r}")
    return found


def _channel_json(channel: Channel, origin: str, enabled: bool) -> dict[str, Any]:
    data = tomllib.loads(channel_to_toml(channel))
    data["enabled"] = enabled
    data["origin"] = origin
    return data


def _xml(channel: Channel, status: int = 400) -> str:
    """The channel as Mirth XML; ``status`` answers when Mirth's XML cannot describe it."""
    classes = {
        name: kind.mirth_properties_class
        for (name, _mode), (kind, _plugin) in current_engine().registry.connectors.items()
        if kind.mirth_properties_class
    }
    try:
        return channel_to_xml(channel, export_data=False, properties_classes=classes)
    except (MirthXmlError, ValueError) as exc:  # lxml: text XML cannot hold
        raise ApiError(
            status, f"channel {channel.name!r} cannot be written as Mirth XML: {exc}"
        ) from None


def _wants_xml() -> bool:
    return request.accept_mimetypes.best_match(["application/json", XML]) == XML


async def _read_body() -> Channel:
    """The channel in the body: JSON (channel-file shape) or Mirth XML."""
    body = await request.get_data(as_text=True)
    if not body.strip():
        raise ApiError(400, "the body must be a channel (JSON or Mirth XML)")
    if request.mimetype in (XML, "text/xml"):
        try:
            return channel_from_xml(body)
        except (MirthXmlError, ValueError) as exc:
            raise ApiError(400, f"channel XML: {exc}") from None
    data = await request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object (a channel) or Mirth XML")
    data = {k: v for k, v in data.items() if k not in ("enabled", "origin")}
    data.setdefault("id", str(uuid.uuid4()))
    try:
        channel = channel_from_dict(data, "channel")
    except (ChannelFormatError, ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from None
    return channel


def _form_of(channel: Channel) -> str | None:
    """Pannier's own form of a channel sent as JSON (None when it came as Mirth XML)."""
    if mirth_extra(channel).get("channel"):
        return None
    return channel_to_toml(channel)


def _check_id(channel: Channel) -> None:
    if not channel.id or len(channel.id) > 36:
        raise ApiError(400, f"id = {channel.id!r}: expected 1 to 36 characters")
    if not channel.name or len(channel.name) > 40:
        raise ApiError(400, f"name = {channel.name!r}: expected 1 to 40 characters (Mirth)")


def _bool_arg(name: str, default: bool) -> bool:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, f"{name} = {text!r}: expected true or false")


# --- definitions ----------------------------------------------------------------------------


@blueprint.get("")
@requires("monitor")
async def list_channels() -> Response:
    """Every channel (query ``channelId`` repeatable to choose some)."""
    wanted = set(request.args.getlist("channelId"))
    disabled = await _store().run_sync(lib.disabled_ids, _store())
    channels = [
        _channel_json(channel, origin, channel_id not in disabled)
        for channel_id, (channel, origin) in (await _library()).items()
        if not wanted or channel_id in wanted
    ]
    return jsonify(channels)


@blueprint.get("/idsAndNames")
@requires("monitor")
async def ids_and_names() -> Response:
    """Channel id → name."""
    return jsonify({cid: channel.name for cid, (channel, _) in (await _library()).items()})


@blueprint.get("/<channel_id>")
@requires("monitor")
async def get_channel(channel_id: str) -> Response:
    """One channel: JSON, or Mirth XML with ``Accept: application/xml``."""
    channel, origin = await _get(channel_id)
    if _wants_xml():
        return Response(_xml(channel, 406), content_type=f"{XML}; charset=utf-8")
    disabled = await _store().run_sync(lib.disabled_ids, _store())
    return jsonify(_channel_json(channel, origin, channel_id not in disabled))


@blueprint.post("")
@requires("manager")
async def create_channel() -> Response:
    """Create a channel (JSON or Mirth XML body); it is stored, not deployed."""
    channel = await _read_body()
    _check_id(channel)
    if channel.id in await _library():
        raise ApiError(409, f"a channel with id {channel.id!r} already exists")
    store = _store()
    await store.run_sync(lib.write_channel, store, channel, _xml(channel), _form_of(channel))
    await store.run_sync(
        lambda: lib.update_channel_metadata(store, channel.id, createdBy="api", enabled=True)
    )
    await record_event("Create channel", attributes={"channelId": channel.id, "name": channel.name})
    response = jsonify(_channel_json(channel, "api", True))
    response.status_code = 201
    response.headers["Location"] = f"/api/channels/{channel.id}"
    return response


@blueprint.put("/<channel_id>")
@requires("manager")
async def update_channel(channel_id: str) -> Response:
    """Replace a channel. Its ``revision`` must be the stored one (409 otherwise) unless
    ``?override=true``; the stored revision goes up by one. Redeploy to run the change."""
    current, origin = await _get(channel_id)
    if origin == "file":
        raise ApiError(409, f"channel {channel_id!r} comes from a channel file; edit the file")
    channel = await _read_body()
    if channel.id != channel_id:
        raise ApiError(400, f"id = {channel.id!r} in the body, but the URL names {channel_id!r}")
    _check_id(channel)
    if not _bool_arg("override", False) and channel.revision != current.revision:
        raise ApiError(
            409,
            f"channel {channel_id!r} is at revision {current.revision}, not "
            f"{channel.revision}: someone changed it since you read it "
            "(read it again, or use ?override=true)",
        )
    channel.revision = current.revision + 1
    store = _store()
    await store.run_sync(lib.write_channel, store, channel, _xml(channel), _form_of(channel))
    await store.run_sync(lambda: lib.update_channel_metadata(store, channel.id))
    await record_event(
        "Update channel", attributes={"channelId": channel_id, "revision": channel.revision}
    )
    disabled = await store.run_sync(lib.disabled_ids, store)
    return jsonify(_channel_json(channel, origin, channel_id not in disabled))


@blueprint.delete("/<channel_id>")
@requires("manager")
async def delete_channel(channel_id: str) -> Response:
    """Undeploy (if deployed) and delete a channel; its messages stay in its tables."""
    _channel, origin = await _get(channel_id)
    if origin == "file":
        raise ApiError(409, f"channel {channel_id!r} comes from a channel file; remove the file")
    await current_engine().undeploy_channel(channel_id)
    store = _store()
    await store.run_sync(lib.delete_channel, store, channel_id)
    await record_event("Delete channel", attributes={"channelId": channel_id})
    return Response("", status=204)


@blueprint.post("/<channel_id>/enabled/<enabled>")
@requires("manager")
async def set_enabled(channel_id: str, enabled: str) -> Response:
    """Enable or disable a channel (``true``/``false``); a disabled one cannot be deployed and
    is not deployed at start."""
    if enabled not in ("true", "false"):
        raise ApiError(400, f"enabled = {enabled!r}: expected true or false")
    await _get(channel_id)
    store = _store()
    value = enabled == "true"
    await store.run_sync(lambda: lib.update_channel_metadata(store, channel_id, enabled=value))
    await record_event(
        "Enable channel" if value else "Disable channel", attributes={"channelId": channel_id}
    )
    return Response("", status=204)


# --- deployment and state -------------------------------------------------------------------


async def _deploy(channel_id: str) -> dict[str, Any]:
    engine = current_engine()
    channel, _origin = await _get(channel_id)
    if channel_id in await _store().run_sync(lib.disabled_ids, _store()):
        raise ApiError(409, f"channel {channel_id!r} is disabled; enable it first")
    deployed = await engine.redeploy(channel)
    if deployed is None:
        reason = engine.deploy_errors.get(channel_id, "unknown reason")
        await record_event(
            "Deploy channel",
            outcome="FAILURE",
            level="ERROR",
            attributes={"channelId": channel_id, "error": reason},
        )
        raise ApiError(422, f"channel {channel.name!r} failed to deploy: {reason}")
    await record_event("Deploy channel", attributes={"channelId": channel_id})
    return {"channelId": channel_id, "state": engine.channel_state(channel_id)}


@blueprint.post("/<channel_id>/_deploy")
@requires("operator")
async def deploy(channel_id: str) -> Response:
    """Deploy (or redeploy) a channel from its stored definition and start it."""
    return jsonify(await _deploy(channel_id))


@blueprint.post("/<channel_id>/_undeploy")
@requires("operator")
async def undeploy(channel_id: str) -> Response:
    """Stop a channel (in-flight messages finish) and undeploy it."""
    if not await current_engine().undeploy_channel(channel_id):
        raise ApiError(409, f"channel {channel_id!r} is not deployed")
    await record_event("Undeploy channel", attributes={"channelId": channel_id})
    return Response("", status=204)


@blueprint.post("/_redeployAll")
@requires("operator")
async def redeploy_all() -> Response:
    """Redeploy every enabled channel; the answer lists each channel's state or error."""
    engine = current_engine()
    disabled = await _store().run_sync(lib.disabled_ids, _store())
    results = []
    for channel_id, (channel, _origin) in (await _library()).items():
        if channel_id in disabled:
            continue
        if channel_id not in engine.channels and channel_id not in engine.stopped_channels:
            continue
        deployed = await engine.redeploy(channel)
        results.append(
            {
                "channelId": channel_id,
                "state": engine.channel_state(channel_id),
                "error": None if deployed else engine.deploy_errors.get(channel_id),
            }
        )
    await record_event("Redeploy all channels", attributes={"count": len(results)})
    return jsonify(results)


def _state_answer(channel_id: str) -> Response:
    return jsonify({"channelId": channel_id, "state": current_engine().channel_state(channel_id)})


def _not_deployed(channel_id: str) -> ApiError:
    return ApiError(409, f"channel {channel_id!r} is not deployed")


@blueprint.post("/<channel_id>/_start")
@requires("operator")
async def start(channel_id: str) -> Response:
    """Start a stopped channel, or resume a paused one."""
    if await current_engine().start_channel(channel_id) is None:
        error = current_engine().deploy_errors.get(channel_id)
        if error:
            raise ApiError(422, f"channel {channel_id!r} failed to start: {error}")
        raise _not_deployed(channel_id)
    await record_event("Start channel", attributes={"channelId": channel_id})
    return _state_answer(channel_id)


@blueprint.post("/<channel_id>/_stop")
@requires("operator")
async def stop(channel_id: str) -> Response:
    """Stop a channel after its in-flight messages finish; it stays deployed."""
    if not await current_engine().stop_channel(channel_id):
        raise _not_deployed(channel_id)
    await record_event("Stop channel", attributes={"channelId": channel_id})
    return _state_answer(channel_id)


@blueprint.post("/<channel_id>/_halt")
@requires("operator")
async def halt(channel_id: str) -> Response:
    """Stop a channel at once; unfinished messages are recovered at its next start."""
    if not await current_engine().stop_channel(channel_id, halt=True):
        raise _not_deployed(channel_id)
    await record_event("Halt channel", attributes={"channelId": channel_id})
    return _state_answer(channel_id)


@blueprint.post("/<channel_id>/_pause")
@requires("operator")
async def pause(channel_id: str) -> Response:
    """Stop the source only; destinations and queues keep working."""
    if not await current_engine().pause_channel(channel_id):
        raise ApiError(409, f"channel {channel_id!r} is not started")
    await record_event("Pause channel", attributes={"channelId": channel_id})
    return _state_answer(channel_id)


@blueprint.post("/<channel_id>/_resume")
@requires("operator")
async def resume(channel_id: str) -> Response:
    """Start the source of a paused channel again."""
    if not await current_engine().resume_channel(channel_id):
        raise ApiError(409, f"channel {channel_id!r} is not paused")
    await record_event("Resume channel", attributes={"channelId": channel_id})
    return _state_answer(channel_id)


@blueprint.post("/<channel_id>/connector/<int:metadata_id>/_start")
@requires("operator")
async def start_connector(channel_id: str, metadata_id: int) -> Response:
    """Start a connector. The source (0) is started as a resume."""
    return await _connector(channel_id, metadata_id, start=True)


@blueprint.post("/<channel_id>/connector/<int:metadata_id>/_stop")
@requires("operator")
async def stop_connector(channel_id: str, metadata_id: int) -> Response:
    """Stop a connector. The source (0) is stopped as a pause."""
    return await _connector(channel_id, metadata_id, start=False)


async def _connector(channel_id: str, metadata_id: int, *, start: bool) -> Response:
    engine = current_engine()
    model = engine.deployed_model(channel_id)
    if model is None:
        raise _not_deployed(channel_id)
    known = [c.metaDataId for c in (model.source, *model.destinations)]
    if metadata_id not in known:
        raise ApiError(404, f"channel {channel_id!r} has no connector {metadata_id}")
    if metadata_id != 0:
        try:
            changed = engine.set_destination_running(channel_id, metadata_id, start)
        except DeployError as exc:
            raise ApiError(409, str(exc)) from None
    else:
        changed = (
            await engine.resume_channel(channel_id)
            if start
            else await engine.pause_channel(channel_id)
        )
    if not changed:
        raise _not_deployed(channel_id)
    await record_event(
        "Start connector" if start else "Stop connector",
        attributes={"channelId": channel_id, "metaDataId": metadata_id},
    )
    return _state_answer(channel_id)


# --- the same operations on several channels (Mirth's bulk forms) ------------------------------


async def _bulk_ids() -> list[str]:
    """Channel ids of a bulk request: ``channelId`` in the query or form (repeatable), or a
    JSON list / ``{"channelIds": [...]}`` body (Mirth's ``<set>`` of ids)."""
    ids = request.args.getlist("channelId") + (await request.form).getlist("channelId")
    if not ids and request.mimetype == "application/json":
        data = await request.get_json(silent=True)
        if isinstance(data, dict):
            data = data.get("channelIds")
        if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
            raise ApiError(400, "expected a JSON list of channel ids, or channelId parameters")
        ids = data
    if not ids:
        raise ApiError(400, "no channel ids: give channelId parameters or a JSON list")
    return list(dict.fromkeys(ids))


async def _bulk(operation: Any) -> Response:
    """Run a single-channel operation for each id; one failure does not stop the others.
    The answer lists, per channel, its HTTP status and its state or error."""
    results = []
    for channel_id in await _bulk_ids():
        try:
            await operation(channel_id)
            results.append(
                {
                    "channelId": channel_id,
                    "status": 200,
                    "state": current_engine().channel_state(channel_id),
                }
            )
        except ApiError as exc:
            results.append({"channelId": channel_id, "status": exc.status, "error": exc.message})
    return jsonify(results)


@blueprint.post("/_deploy")
@requires("operator")
async def deploy_many() -> Response:
    """Deploy several channels (ids as ``channelId`` parameters or a JSON list)."""
    return await _bulk(deploy)


@blueprint.post("/_undeploy")
@requires("operator")
async def undeploy_many() -> Response:
    """Undeploy several channels."""
    return await _bulk(undeploy)


@blueprint.post("/_start")
@requires("operator")
async def start_many() -> Response:
    """Start (or resume) several channels."""
    return await _bulk(start)


@blueprint.post("/_stop")
@requires("operator")
async def stop_many() -> Response:
    """Stop several channels after their in-flight messages finish."""
    return await _bulk(stop)


@blueprint.post("/_halt")
@requires("operator")
async def halt_many() -> Response:
    """Halt several channels at once."""
    return await _bulk(halt)


@blueprint.post("/_pause")
@requires("operator")
async def pause_many() -> Response:
    """Pause several channels (their sources stop)."""
    return await _bulk(pause)


@blueprint.post("/_resume")
@requires("operator")
async def resume_many() -> Response:
    """Resume several paused channels."""
    return await _bulk(resume)


# --- dashboard and statistics -----------------------------------------------------------------


async def _statuses(channel_ids: list[str], include_undeployed: bool) -> list[dict[str, Any]]:
    engine = current_engine()
    library = await _library()
    result = []
    for channel_id, (channel, _origin) in library.items():
        if channel_ids and channel_id not in channel_ids:
            continue
        state = engine.channel_state(channel_id)
        model = engine.deployed_model(channel_id) or channel
        if state is None:
            if not include_undeployed:
                continue
            state = "UNDEPLOYED"
        delta = channel.revision - model.revision if state != "UNDEPLOYED" else 0
        result.append(await channel_status(engine, model, state, delta))
    return result


@blueprint.get("/statuses")
@requires("monitor")
async def statuses() -> Response:
    """Dashboard: deployed channels with statistics, connector statuses and queued counts
    (query ``channelId`` repeatable, ``includeUndeployed``)."""
    ids = request.args.getlist("channelId")
    return jsonify(await _statuses(ids, _bool_arg("includeUndeployed", False)))


@blueprint.get("/<channel_id>/status")
@requires("monitor")
async def status(channel_id: str) -> Response:
    """One channel's dashboard status."""
    found = await _statuses([channel_id], include_undeployed=True)
    if not found:
        raise ApiError(404, f"no channel with id {channel_id!r}")
    return jsonify(found[0])


@blueprint.get("/statistics")
@requires("monitor")
async def all_statistics() -> Response:
    """Current statistics of every deployed channel."""
    return jsonify(
        [
            {"channelId": s["channelId"], **s["statistics"]}
            for s in await _statuses(request.args.getlist("channelId"), False)
        ]
    )


@blueprint.get("/<channel_id>/statistics")
@requires("monitor")
async def statistics(channel_id: str) -> Response:
    """One channel's current statistics (received, filtered, sent, error) and lifetime ones."""
    found = await _statuses([channel_id], include_undeployed=True)
    if not found:
        raise ApiError(404, f"no channel with id {channel_id!r}")
    item = found[0]
    return jsonify(
        {
            "channelId": channel_id,
            **item["statistics"],
            "lifetime": item["lifetimeStatistics"],
            "connectors": {str(c["metaDataId"]): c["statistics"] for c in item["childStatuses"]},
        }
    )


@blueprint.post("/_clearStatistics")
@requires("operator")
async def clear_statistics() -> Response:
    """Set current counts to 0 (lifetime counts stay): query ``channelId`` repeatable (none:
    every channel), ``received``/``filtered``/``sent``/``error`` (default true)."""
    engine = current_engine()
    names = [name for name in STAT_NAMES if _bool_arg(name.lower(), True)]
    library = await _library()
    wanted = request.args.getlist("channelId") or list(library)
    unknown = [cid for cid in wanted if cid not in library]
    if unknown:
        raise ApiError(404, f"no channel with id {unknown[0]!r}")
    store = _store()
    for channel_id in wanted:
        deployed = engine.channels.get(channel_id)
        if deployed is not None:
            await deployed._flush_statistics(final=True)  # pending counts first
        await store.run_sync(clear_counts, store, channel_id, names)
    await record_event(
        "Clear statistics", attributes={"channels": ",".join(wanted), "counts": ",".join(names)}
    )
    return Response("", status=204)
