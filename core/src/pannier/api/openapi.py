"""``GET /api/openapi.json``: an OpenAPI 3.1 document generated from the app's URL rules, so
it lists exactly the routes served — core, messages and plugin routes alike. Each operation
takes its summary from the view's docstring and its roles from :func:`requires`; request
bodies and query parameters of core routes are described in :data:`EXTRA`."""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from pannier import __version__
from pannier.api.auth import ROLES, public
from pannier.api.extensions import plugin_of

blueprint = Blueprint("openapi", __name__, url_prefix="/api")

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
IGNORED_METHODS = {"HEAD", "OPTIONS"}

_OBJECT = {"type": "object"}
_LOGIN = {
    "type": "object",
    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    "required": ["username", "password"],
}


def _query(name: str, kind: str = "string", many: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if many:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": False, "schema": schema}


#: Bodies and query parameters of core routes, by endpoint.
EXTRA: dict[str, dict[str, Any]] = {
    "users.login": {
        "body": {
            "application/x-www-form-urlencoded": _LOGIN,
            "application/json": _LOGIN,
        }
    },
    "users.create": {"body": {"application/json": _OBJECT}},
    "users.update_password": {"body": {"application/json": _OBJECT}},
    "users.update_role": {"body": {"application/json": _OBJECT}},
    "channels.create_channel": {"body": {"application/json": _OBJECT}},
    "channels.update_channel": {
        "body": {"application/json": _OBJECT},
        "query": [_query("override", "boolean")],
    },
    "channels.list_channels": {"query": [_query("channelId", many=True)]},
    **{
        f"channels.{operation}_many": {
            "query": [_query("channelId", many=True)],
            "body": {"application/json": {"type": "array", "items": {"type": "string"}}},
        }
        for operation in ("deploy", "undeploy", "start", "stop", "halt", "pause", "resume")
    },
    "channels.statuses": {
        "query": [_query("channelId", many=True), _query("includeUndeployed", "boolean")]
    },
    "channels.clear_statistics": {
        "query": [_query("channelId", many=True)]
        + [_query(n, "boolean") for n in ("received", "filtered", "sent", "error")]
    },
    "server.put_configuration_map": {"body": {"application/json": _OBJECT}},
    "server.put_global_scripts": {"body": {"application/json": _OBJECT}},
    "server.put_channel_tags": {"body": {"application/json": {"type": "array"}}},
    "server.put_channel_metadata": {"body": {"application/json": _OBJECT}},
    "events.list_events": {
        "query": [_query("offset", "integer"), _query("limit", "integer"), _query("name")]
    },
    # Message routes (pannier.api.messages): Mirth's filter names, paging, send options.
    **{
        f"messages.{endpoint}": {
            "query": [
                _query("minMessageId", "integer"),
                _query("maxMessageId", "integer"),
                _query("startDate"),
                _query("endDate"),
                _query("status", many=True),
                _query("textSearch"),
                _query("metaDataSearch", many=True),
                _query("serverId"),
                _query("offset", "integer"),
                _query("limit", "integer"),
                _query("includeContent", "boolean"),
            ][: 11 if endpoint.startswith("search") else 8],
            **({"body": {"application/json": _OBJECT}} if endpoint.endswith("post") else {}),
        }
        for endpoint in ("search", "search_post", "count", "count_post", "reprocess_many")
    },
    "messages.remove_all": {"query": [_query("status", many=True), _query("textSearch")]},
    "messages.send": {
        "body": {"text/plain": {"type": "string"}},
        "query": [_query("sourceMapEntry", many=True)],
    },
}


def openapi_path(rule: str) -> str:
    """``/api/channels/<channel_id>`` → ``/api/channels/{channel_id}``."""
    return _PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)


def _operation(endpoint: str, rule: str, view: Any) -> dict[str, Any]:
    doc = (view.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    tag = endpoint.split(".")[0]
    if getattr(view, "pannier_plugin_route", False):
        tag = f"plugin:{plugin_of(rule[len('/api') :])}"
    roles = list(getattr(view, "pannier_roles", ()))
    is_public = getattr(view, "pannier_public", False)
    operation: dict[str, Any] = {
        "operationId": endpoint,
        "summary": summary or endpoint,
        "tags": [tag],
        "responses": {
            "200": {"description": "success"},
            "204": {"description": "done, nothing to answer"},
            "400": {"description": "the request is wrong; the error says what"},
            "404": {"description": "not found"},
        },
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if is_public:
        operation["security"] = []
    else:
        allowed = [r for r in ROLES if not roles or ROLES.index(r) <= max(map(ROLES.index, roles))]
        operation["x-roles"] = allowed
        operation["responses"]["401"] = {"description": "not logged in"}
        operation["responses"]["403"] = {"description": "role not allowed"}
    parameters = []
    for converter, name in _PARAM.findall(rule):
        kind = "integer" if converter == "int" else "string"
        parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    extra = EXTRA.get(endpoint, {})
    parameters += extra.get("query", [])
    if parameters:
        operation["parameters"] = parameters
    if "body" in extra:
        operation["requestBody"] = {
            "content": {mime: {"schema": schema} for mime, schema in extra["body"].items()}
        }
    return operation


def build_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.rule.startswith("/api"):
            continue
        view = current_app.view_functions[rule.endpoint]
        item = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted(set(rule.methods or ()) - IGNORED_METHODS):
            item[method.lower()] = _operation(rule.endpoint, rule.rule, view)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pannier API",
            "version": __version__,
            "description": "Mirth-compatible administration API of a Pannier engine. Every "
            "request needs a non-blank X-Requested-With header (health probes excepted).",
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "JSESSIONID"},
            }
        },
        "security": [{"basic": []}, {"session": []}],
        "paths": dict(sorted(paths.items())),
    }


@blueprint.get("/openapi.json")
@public
async def openapi() -> Response:
    """This document."""
    return jsonify(build_document())
