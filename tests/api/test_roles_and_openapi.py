"""The role matrix over every core route (each role allowed and refused where it should be),
and the OpenAPI document listing exactly the routes served."""

from __future__ import annotations

import tomllib

import pytest
from pannier.api.app import create_app
from pannier.api.auth import ROLES
from pannier.api.openapi import openapi_path

from tests.api.conftest import CHANNEL_A, CHANNEL_B, Api, channel_toml

NEW_ID = "ffffffff-0000-4000-8000-000000000006"
A = f"/api/channels/{CHANNEL_A}"

#: (method, path, body, weakest role allowed), in an order whose side effects are harmless.
MATRIX: list[tuple[str, str, object, str]] = [
    ("GET", "/api/users/current", None, "monitor"),
    ("GET", "/api/users", None, "admin"),
    ("POST", "/api/users", {"username": "new-user", "password": "p", "role": "monitor"}, "admin"),
    ("PUT", "/api/users/new-user/role", {"role": "operator"}, "admin"),
    ("PUT", "/api/users/new-user/password", {"password": "q"}, "admin"),
    ("GET", "/api/server/id", None, "monitor"),
    ("GET", "/api/server/version", None, "monitor"),
    ("GET", "/api/server/status", None, "monitor"),
    ("GET", "/api/server/configurationMap", None, "monitor"),
    ("PUT", "/api/server/configurationMap", {"a": "b"}, "manager"),
    ("GET", "/api/server/globalScripts", None, "monitor"),
    ("PUT", "/api/server/globalScripts", {"Deploy": ""}, "manager"),
    ("GET", "/api/server/channelTags", None, "monitor"),
    ("PUT", "/api/server/channelTags", [], "manager"),
    ("GET", "/api/server/channelMetadata", None, "monitor"),
    ("PUT", "/api/server/channelMetadata", {}, "manager"),
    ("GET", "/api/events", None, "manager"),
    ("GET", "/api/channels", None, "monitor"),
    ("GET", "/api/channels/idsAndNames", None, "monitor"),
    ("GET", A, None, "monitor"),
    ("GET", "/api/channels/statuses", None, "monitor"),
    ("GET", "/api/channels/statistics", None, "monitor"),
    ("GET", f"{A}/status", None, "monitor"),
    ("GET", f"{A}/statistics", None, "monitor"),
    ("POST", "/api/channels/_clearStatistics", None, "operator"),
    ("POST", "/api/channels", tomllib.loads(channel_toml(NEW_ID, "New")), "manager"),
    (
        "PUT",
        f"/api/channels/{NEW_ID}?override=true",
        tomllib.loads(channel_toml(NEW_ID, "N")),
        "manager",
    ),
    ("POST", f"/api/channels/{NEW_ID}/enabled/true", None, "manager"),
    ("POST", f"{A}/_pause", None, "operator"),
    ("POST", f"{A}/_resume", None, "operator"),
    ("POST", f"{A}/connector/0/_stop", None, "operator"),
    ("POST", f"{A}/connector/0/_start", None, "operator"),
    ("POST", f"{A}/_stop", None, "operator"),
    ("POST", f"{A}/_start", None, "operator"),
    ("POST", f"{A}/_halt", None, "operator"),
    ("POST", f"{A}/_start", None, "operator"),
    ("POST", "/api/channels/_redeployAll", None, "operator"),
    ("POST", f"/api/channels/{CHANNEL_B}/_undeploy", None, "operator"),
    ("POST", f"/api/channels/{CHANNEL_B}/_deploy", None, "operator"),
    ("POST", "/api/channels/_stop", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_start", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_pause", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_resume", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_halt", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_undeploy", [CHANNEL_B], "operator"),
    ("POST", "/api/channels/_deploy", [CHANNEL_B], "operator"),
    ("DELETE", f"/api/channels/{NEW_ID}", None, "manager"),
    ("POST", "/api/users/_logout", None, "monitor"),
]

#: Routes every role may call without a role check beyond being logged in, or public ones.
OPEN = {"/api/users/_login", "/api/openapi.json"}


def allowed(role: str, weakest: str) -> bool:
    return ROLES.index(role) <= ROLES.index(weakest)


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(api: Api, role: str) -> None:
    credentials = await api.add_user(f"user-{role}", role)
    problems = []
    async with api.client(auth=credentials) as client:
        for method, path, body, weakest in MATRIX:
            response = await client.request(method, path, json=body)
            if allowed(role, weakest):
                if response.status_code in (401, 403) or response.status_code >= 500:
                    problems.append(f"{method} {path}: refused or failed {response.status_code}")
            elif response.status_code != 403:
                problems.append(f"{method} {path}: expected 403, got {response.status_code}")
    assert not problems, "\n".join(problems)


async def test_matrix_covers_every_core_route(api: Api) -> None:
    """Every non-public core route (messages are tested in test_messages_api.py) is in the
    role matrix, so a new route cannot escape it."""
    async with api.client() as client:
        document = (await client.get("/api/openapi.json")).json()
    covered = set()
    for method, path, _body, _role in MATRIX:
        bare = path.split("?")[0]
        for template in document["paths"]:
            parts, real = template.split("/"), bare.split("/")
            if len(parts) == len(real) and all(
                p == r or p.startswith("{") for p, r in zip(parts, real, strict=True)
            ):
                covered.add((method.lower(), template))
    missing = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            if "messages" in operation["tags"] or operation.get("security") == []:
                continue
            if (method, template) not in covered:
                missing.append(f"{method.upper()} {template}")
    assert not missing, missing


async def test_openapi_lists_exactly_the_served_routes(api: Api) -> None:
    async with api.client(auth=None) as client:
        response = await client.get("/api/openapi.json")
    assert response.status_code == 200  # public, like Mirth's Swagger document
    document = response.json()
    assert document["openapi"].startswith("3.")
    app_rules = set()
    app = create_app(api.engine)  # the same routes the served app has
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api"):
            for method in rule.methods or ():
                if method not in ("HEAD", "OPTIONS"):
                    app_rules.add((method.lower(), openapi_path(rule.rule)))
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert documented == app_rules
    assert ("get", "/api/channels/{channel_id}") in documented
    assert ("post", "/api/users/_login") in documented
    login = document["paths"]["/api/users/_login"]["post"]
    assert login["security"] == []
    assert document["paths"]["/api/users"]["get"]["x-roles"] == ["admin"]
    assert document["paths"]["/api/channels"]["get"]["x-roles"] == list(ROLES)
    assert OPEN <= set(document["paths"])
