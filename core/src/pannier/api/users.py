"""Login, logout and users (mirth-compat §7): ``POST /api/users/_login`` answers Mirth's
``LoginStatus`` and sets a ``JSESSIONID`` session cookie; admins create users, set passwords
and roles."""

from __future__ import annotations

import math
from typing import Any

import trio
from quart import Blueprint, Response, jsonify, request

from pannier.api import ApiError, current_engine
from pannier.api.accounts import (
    User,
    create_user,
    find_user,
    list_users,
    mark_login,
    set_password,
    set_role,
)
from pannier.api.app import SESSION_COOKIE, api_state, check_credentials, current_user
from pannier.api.auth import ROLES, hash_password, public, requires
from pannier.api.events import record_event

blueprint = Blueprint("users", __name__, url_prefix="/api/users")

USERNAME_MAX = 40


async def request_fields() -> dict[str, Any]:
    """The body as fields: a form (Mirth's Administrator) or a JSON object. Text that cannot
    be UTF-8 (JSON can carry lone surrogates) is refused here, once."""
    if request.mimetype == "application/json":
        data = await request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
    else:
        data = dict((await request.form).items())
    for key, value in data.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, f"{key}: not valid Unicode text") from None
    return data


def _login_status(status: str, message: str, code: int) -> Response:
    response = jsonify({"status": status, "message": message, "updatedUsername": None})
    response.status_code = code
    return response


@blueprint.post("/_login")
@public
async def login() -> Response:
    """Log in with username and password (form or JSON); sets the JSESSIONID cookie."""
    engine = current_engine()
    state = api_state()
    fields = await request_fields()
    username = fields.get("username")
    password = fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise ApiError(400, "username and password are required (form fields or JSON)")
    address = request.remote_addr or "unknown"
    if not state.limiter.allow_attempt(address):
        response = _login_status(
            "FAIL", f"too many login attempts from {address}; try again in a minute", 429
        )
        response.headers["Retry-After"] = "60"
        return response
    locked = state.limiter.locked_for(username)
    if locked > 0:
        await record_event(
            "Login", outcome="FAILURE", attributes={"username": username, "reason": "locked out"}
        )
        response = _login_status(
            "FAIL_LOCKED_OUT",
            f"user {username!r} is locked out after repeated failed logins; "
            f"try again in {math.ceil(locked)} seconds",
            429,
        )
        response.headers["Retry-After"] = str(math.ceil(locked))
        return response
    user = await check_credentials(engine, username, password)
    if user is None:
        await record_event("Login", outcome="FAILURE", attributes={"username": username})
        return _login_status("FAIL", "Incorrect username or password.", 401)
    token = state.sessions.create(user.id, user.username, user.role)
    store = engine.store
    assert store is not None
    await store.run_sync(mark_login, store, user.id, True)
    await record_event("Login", attributes={"username": username}, user_id=user.id)
    response = _login_status("SUCCESS", "", 200)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=bool(engine.config["api.tls_cert"]),
        path="/api",
    )
    return response


@blueprint.post("/_logout")
async def logout() -> Response:
    """End the session of the JSESSIONID cookie."""
    user = current_user()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        api_state().sessions.end(token)
    store = current_engine().store
    assert store is not None
    await store.run_sync(mark_login, store, user.user_id, False)
    await record_event("Logout", attributes={"username": user.username})
    response = Response("", status=204)
    response.delete_cookie(SESSION_COOKIE, path="/api")
    return response


@blueprint.get("/current")
async def current() -> Response:
    """The logged-in user."""
    user = current_user()
    found = await _find(user.username)
    return jsonify(found.as_json())


async def _find(username: str) -> User:
    store = current_engine().store
    assert store is not None
    user = await store.run_sync(find_user, store, username)
    if user is None:
        raise ApiError(404, f"no user named {username!r}")
    return user


def _role(value: Any) -> str:
    if value not in ROLES:
        raise ApiError(400, f"role = {value!r}: expected one of {', '.join(ROLES)}")
    return str(value)


def _password(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "password: expected a non-empty string")
    return value


@blueprint.get("")
@requires("admin")
async def users() -> Response:
    """Every user with its role."""
    store = current_engine().store
    assert store is not None
    return jsonify([user.as_json() for user in await store.run_sync(list_users, store)])


@blueprint.post("")
@requires("admin")
async def create() -> Response:
    """Create a user: JSON username, password, role, optional firstName/lastName/email."""
    fields = await request_fields()
    username = fields.get("username")
    if not isinstance(username, str) or not username.strip() or len(username) > USERNAME_MAX:
        raise ApiError(400, f"username: expected 1 to {USERNAME_MAX} characters")
    password = _password(fields.get("password"))
    role = _role(fields.get("role", "monitor"))
    details = {k: str(fields[k]) for k in ("firstName", "lastName", "email") if fields.get(k)}
    store = current_engine().store
    assert store is not None
    if await store.run_sync(find_user, store, username) is not None:
        raise ApiError(409, f"a user named {username!r} already exists")
    hashed = await _hash(password)
    user = await store.run_sync(create_user, store, username, hashed, role, details)
    await record_event("Create user", attributes={"username": username, "role": role})
    response = jsonify(user.as_json())
    response.status_code = 201
    return response


async def _hash(password: str) -> str:
    return await trio.to_thread.run_sync(hash_password, password, limiter=api_state().hashing)


@blueprint.put("/<username>/password")
async def update_password(username: str) -> Response:
    """Set a password: your own, or anyone's as an admin. Body: JSON or form ``password``."""
    user = current_user()
    if user.username != username and user.role != "admin":
        raise ApiError(403, "only an admin may change another user's password")
    target = await _find(username)
    password = _password((await request_fields()).get("password"))
    store = current_engine().store
    assert store is not None
    await store.run_sync(set_password, store, target.id, await _hash(password))
    await record_event("Update password", attributes={"username": username})
    return Response("", status=204)


@blueprint.put("/<username>/role")
@requires("admin")
async def update_role(username: str) -> Response:
    """Set a user's role (JSON or form ``role``)."""
    target = await _find(username)
    role = _role((await request_fields()).get("role"))
    store = current_engine().store
    assert store is not None
    await store.run_sync(set_role, store, target.id, role)
    await record_event("Update user role", attributes={"username": username, "role": role})
    return jsonify((await _find(username)).as_json())
