"""The API application (QuartTrio) and its server (Hypercorn's trio worker).

Every request passes :func:`_check_request` before its view: CORS pre-flight, Mirth's
``X-Requested-With`` rule, then authentication (session cookie or HTTP Basic) and the view's
roles. Errors always answer JSON ``{"error": "..."}``; an unexpected exception is logged here
with its traceback and answers a generic 500, so no stack trace reaches a client.
"""

from __future__ import annotations

import base64
import binascii
import logging
import socket
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, g, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from pannier.api import ApiError
from pannier.api.accounts import User, find_user
from pannier.api.auth import (
    BasicCache,
    LoginLimiter,
    Session,
    SessionStore,
    role_allows,
    verify_password,
)
from pannier.config import ConfigError

if TYPE_CHECKING:
    from pannier.engine import Engine

log = logging.getLogger("pannier.api")

SESSION_COOKIE = "JSESSIONID"
REQUESTED_WITH_ERROR = "All requests must have 'X-Requested-With' header"
HASHING_THREADS = 2


class ApiState:
    """What the app keeps between requests: sessions, login limits, the Basic cache."""

    def __init__(self, engine: Engine) -> None:
        config = engine.config
        self.sessions = SessionStore(float(config["api.session_timeout_seconds"]))
        self.limiter = LoginLimiter(
            rate_per_minute=config["api.login_rate_per_minute"],
            max_failures=config["api.login_max_failures"],
            lockout_seconds=float(config["api.login_lockout_seconds"]),
        )
        self.basic_cache = BasicCache()
        self.hashing = trio.CapacityLimiter(HASHING_THREADS)
        """600 000 PBKDF2 rounds take most of a second of CPU: at most this many at once, so
        a burst of logins cannot starve the engine's own worker threads."""


def api_state() -> ApiState:
    from quart import current_app

    state: ApiState = current_app.config["PANNIER_API_STATE"]
    return state


def current_user() -> Session:
    """The logged-in user of the current request (routes that need no login have none)."""
    user: Session | None = g.get("pannier_user")
    if user is None:
        raise ApiError(401, "not logged in")
    return user


def create_app(engine: Engine) -> QuartTrio:
    """The API for ``engine``: core blueprints, the messages blueprint, plugin routes."""
    from pannier.api import channels, events, health, openapi, server, users
    from pannier.api.extensions import mount_plugin_routes
    from pannier.api.messages import blueprint as messages_blueprint

    app = QuartTrio("pannier.api")
    app.config["PANNIER_ENGINE"] = engine
    app.config["PANNIER_API_STATE"] = ApiState(engine)
    app.config["MAX_CONTENT_LENGTH"] = engine.config["api.max_request_bytes"]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    for blueprint in (
        health.blueprint,
        users.blueprint,
        channels.blueprint,
        server.blueprint,
        events.blueprint,
        openapi.blueprint,
    ):
        app.register_blueprint(blueprint)
    app.register_blueprint(messages_blueprint)
    mount_plugin_routes(app, engine)
    app.before_request(_check_request)
    app.after_request(_cors_headers)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


# --- request checks -------------------------------------------------------------------------


async def _check_request() -> Response | None:
    from quart import current_app

    engine: Engine = current_app.config["PANNIER_ENGINE"]
    # Read the body before any early answer (pre-flight, 400, 401, 404, 405): Hypercorn can
    # stall a kept-alive connection whose previous request body the app never read. Views
    # get it from the cache; its size is capped by api.max_request_bytes (413).
    await request.get_data()
    if request.method == "OPTIONS":
        return _preflight(engine)
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None  # 404/405 follow
    if getattr(view, "pannier_public", False) and getattr(view, "pannier_probe", False):
        return None  # health probes: no header, no login (orchestrators)
    if (
        engine.config["api.require_requested_with"]
        and not request.headers.get("X-Requested-With", "").strip()
    ):
        raise ApiError(400, REQUESTED_WITH_ERROR)
    if getattr(view, "pannier_public", False):
        return None
    user = await _authenticate(engine)
    if user is None:
        response = jsonify({"error": "authentication required: log in or use HTTP Basic"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="Pannier"'
        return response
    g.pannier_user = user
    roles = getattr(view, "pannier_roles", ())
    if not role_allows(user.role, roles):
        raise ApiError(
            403, f"user {user.username!r} has role {user.role}; this needs {' or '.join(roles)}"
        )
    return None


async def _authenticate(engine: Engine) -> Session | None:
    state = api_state()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        session = state.sessions.get(token)
        if session is not None:
            return session
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "Authorization: Basic credentials are not valid Base64") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise ApiError(400, "Authorization: Basic credentials must be 'user:password'")
    user = await check_credentials(engine, username, password)
    if user is None:
        return None
    return Session(user.id, user.username, user.role, 0.0)


async def check_credentials(engine: Engine, username: str, password: str) -> User | None:
    """The user when ``password`` is right (and not locked out), else None."""
    state = api_state()
    if state.limiter.locked_for(username) > 0:
        return None
    store = engine.store
    assert store is not None
    user = await store.run_sync(find_user, store, username)
    if user is None or not user.password_hash:
        state.limiter.failed(username)
        return None
    stored = user.password_hash
    if state.basic_cache.hit(username, stored, password):
        return user
    if not await trio.to_thread.run_sync(verify_password, password, stored, limiter=state.hashing):
        state.limiter.failed(username)
        return None
    state.basic_cache.remember(username, stored, password)
    state.limiter.succeeded(username)
    return user


# --- CORS -----------------------------------------------------------------------------------


def _allowed_origin(engine: Engine) -> str | None:
    origin = request.headers.get("Origin")
    allowed = engine.config["api.cors_origins"]
    if origin and (origin in allowed or "*" in allowed):
        return str(origin)
    return None


def _preflight(engine: Engine) -> Response:
    response = Response("", status=204)
    origin = _allowed_origin(engine)
    if origin:
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            "Authorization, Content-Type, X-Requested-With, Accept"
        )
        response.headers["Access-Control-Max-Age"] = "600"
    return response


async def _cors_headers(response: Response) -> Response:
    from quart import current_app

    origin = _allowed_origin(current_app.config["PANNIER_ENGINE"])
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


# --- errors ---------------------------------------------------------------------------------


def error_response(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


async def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.message)


async def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    messages = {
        404: f"no API route {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: "the request body is larger than api.max_request_bytes "
        f"({api_engine_config('api.max_request_bytes')} bytes)",
    }
    message = messages.get(status) or exc.description or exc.name
    response = error_response(status, message)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def api_engine_config(key: str) -> Any:
    from quart import current_app

    return current_app.config["PANNIER_ENGINE"].config[key]


async def _unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return await _http_error(exc)
    if isinstance(exc, ApiError):
        return await _api_error(exc)
    if isinstance(exc, UnicodeError):
        # Quart decodes bodies as UTF-8, and JSON may carry lone surrogates no database or
        # XML can store: both are the client's text, not a server fault.
        return error_response(400, f"the request holds text that is not valid Unicode: {exc}")
    log.error("API %s %s failed", request.method, request.path, exc_info=exc)
    return error_response(500, "internal error; the server log has the details")


# --- serving --------------------------------------------------------------------------------


def hypercorn_config(engine: Engine) -> HypercornConfig:
    config = engine.config
    hc = HypercornConfig()
    host = str(config["api.host"])
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    hc.bind = [f"{host}:{config['api.port']}"]
    if config["api.tls_cert"] or config["api.tls_key"]:
        hc.certfile = str(config.resolve_path(config["api.tls_cert"]))
        hc.keyfile = str(config.resolve_path(config["api.tls_key"]))
    hc.accesslog = None
    hc.errorlog = logging.getLogger("pannier.api.server")
    hc.graceful_timeout = 2.0
    hc.include_server_header = False
    return hc


def _check_address(host: str, port: int) -> None:
    """Fail start-up with the key and the reason when the API cannot listen there (Hypercorn
    would only raise a bare OSError from deep inside its worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(
                f"api.host / api.port = {host}:{port}: cannot listen there: {exc.strerror}"
            ) from None


async def serve_api(engine: Engine, *, task_status: trio.TaskStatus[str]) -> None:
    """Serve the API until cancelled; ``task_status`` gets the address it listens on."""
    from pannier.api.accounts import ensure_role_table

    config = engine.config
    if bool(config["api.tls_cert"]) != bool(config["api.tls_key"]):
        raise ConfigError("api.tls_cert and api.tls_key: give both (HTTPS) or neither (HTTP)")
    _check_address(str(config["api.host"]), int(config["api.port"]))
    assert engine.store is not None
    await engine.store.run_sync(ensure_role_table, engine.store)
    app = create_app(engine)

    async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, hypercorn_config(engine), task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(started)
        address = binds[0]
        log.info("HTTP API ready at %s/api", address)
        task_status.started(address)
