"""Server routes (mirth-compat §7 rows 4-10): id, version, status, configuration map, global
scripts, channel tags and channel metadata."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from pannier import __version__
from pannier.api import ApiError, current_engine, refuse_with_workers
from pannier.api import library as lib
from pannier.api.auth import requires
from pannier.api.events import record_event
from pannier.store.store import Store

blueprint = Blueprint("server", __name__, url_prefix="/api/server")

#: Mirth's ``ServerStatus`` values: 0 running, 1 engine stopped, 2 engine starting.
STATUS_RUNNING, STATUS_STOPPED, STATUS_STARTING = 0, 1, 2


def _store() -> Store:
    store = current_engine().store
    assert store is not None
    return store


async def _json_body(expected: type, what: str) -> Any:
    data = await request.get_json(silent=True, force=True)
    if not isinstance(data, expected):
        raise ApiError(400, f"the body must be {what}")
    return data


@blueprint.get("/id")
@requires("monitor")
async def server_id() -> Response:
    """This engine's server id (``server.id`` in Mirth's appdata format)."""
    return jsonify(current_engine().server_id)


@blueprint.get("/version")
@requires("monitor")
async def version() -> Response:
    """Pannier's version."""
    return jsonify(__version__)


@blueprint.get("/status")
@requires("monitor")
async def status() -> Response:
    """Mirth's server status number: 0 running, 1 stopping or stopped, 2 starting."""
    engine = current_engine()
    if engine.draining:
        return jsonify(STATUS_STOPPED)
    return jsonify(STATUS_RUNNING if engine.ready else STATUS_STARTING)


@blueprint.get("/configurationMap")
@requires("monitor")
async def get_configuration_map() -> Response:
    """The configuration map as Mirth shapes it: key → {value, comment}."""
    values = await current_engine().map_backend.items("configuration")
    return jsonify({key: {"value": value, "comment": ""} for key, value in values.items()})


@blueprint.put("/configurationMap")
@requires("manager")
async def put_configuration_map() -> Response:
    """Replace the configuration map: key → value, or key → {value, comment} as Mirth
    (comments are not kept). Scripts see the new values from their next message."""
    if not current_engine().map_backend_shared:
        refuse_with_workers("PUT /api/server/configurationMap (map backend not shared)")
    data = await _json_body(dict, "a JSON object of key → value or {value, comment}")
    values: dict[str, str] = {}
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else item
        if not isinstance(value, (str, int, float, bool)) or isinstance(value, dict):
            raise ApiError(400, f"configurationMap[{key!r}]: expected a text value")
        values[key] = str(value)
    backend = current_engine().map_backend
    await backend.clear("configuration")
    for key, value in values.items():
        await backend.put("configuration", key, value)
    await record_event("Set configuration map", attributes={"keys": len(values)})
    return Response("", status=204)


@blueprint.get("/globalScripts")
@requires("monitor")
async def get_global_scripts() -> Response:
    """Global Deploy / Undeploy / Preprocessor / Postprocessor scripts (Mirth's SCRIPT rows)."""
    return jsonify(await _store().run_sync(lib.global_scripts, _store()))


@blueprint.put("/globalScripts")
@requires("manager")
async def put_global_scripts() -> Response:
    """Store global scripts (JSON object of script id → text). They are kept for Java Mirth;
    Pannier runs the global scripts of ``[scripts]`` in pannier.toml."""
    data = await _json_body(dict, "a JSON object of script id → script text")
    for key, value in data.items():
        if key not in lib.GLOBAL_SCRIPT_IDS:
            raise ApiError(
                400,
                f"globalScripts: unknown script {key!r}; expected "
                f"{', '.join(lib.GLOBAL_SCRIPT_IDS)}",
            )
        if not isinstance(value, str):
            raise ApiError(400, f"globalScripts[{key!r}]: expected text")
    await _store().run_sync(lib.put_global_scripts, _store(), data)
    await record_event("Set global scripts", attributes={"scripts": ",".join(sorted(data))})
    return Response("", status=204)


@blueprint.get("/channelTags")
@requires("monitor")
async def get_channel_tags() -> Response:
    """Channel tags: a list of {id, name, channelIds, backgroundColor}."""
    return jsonify(await _store().run_sync(lib.get_setting, _store(), "channelTags", []))


@blueprint.put("/channelTags")
@requires("manager")
async def put_channel_tags() -> Response:
    """Replace the channel tags."""
    data = await _json_body(list, "a JSON list of tags")
    for index, tag in enumerate(data):
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str) or not tag["name"]:
            raise ApiError(400, f"channelTags[{index}]: expected an object with a name")
        ids = tag.get("channelIds", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, f"channelTags[{index}].channelIds: expected a list of ids")
    await _store().run_sync(lib.put_setting, _store(), "channelTags", data)
    await record_event("Set channel tags", attributes={"tags": len(data)})
    return Response("", status=204)


@blueprint.get("/channelMetadata")
@requires("monitor")
async def get_channel_metadata() -> Response:
    """Per-channel metadata: channel id → {enabled, lastModified, ...}."""
    return jsonify(await _store().run_sync(lib.channel_metadata, _store()))


@blueprint.put("/channelMetadata")
@requires("manager")
async def put_channel_metadata() -> Response:
    """Merge per-channel metadata (``enabled`` must be true or false when given)."""
    data = await _json_body(dict, "a JSON object of channel id → metadata object")
    for channel_id, entry in data.items():
        if not isinstance(entry, dict):
            raise ApiError(400, f"channelMetadata[{channel_id!r}]: expected an object")
        if "enabled" in entry and not isinstance(entry["enabled"], bool):
            raise ApiError(400, f"channelMetadata[{channel_id!r}].enabled: expected true/false")
    store = _store()

    def merge() -> None:
        for channel_id, entry in data.items():
            changes = {k: v for k, v in entry.items() if k not in ("createdBy", "lastModified")}
            lib.update_channel_metadata(store, channel_id, **changes)

    await store.run_sync(merge)
    await record_event("Set channel metadata", attributes={"channels": len(data)})
    return Response("", status=204)
