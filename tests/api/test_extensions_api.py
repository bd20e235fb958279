"""Plugin routes from ``pannier_register_routes``: mounted under /api, roles enforced, listed
in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Sequence

from pannier import hookimpl
from pannier.extensions import Route
from quart import request

from tests.api.conftest import StartApi


class DemoPlugin:
    """A tiny plugin with a public-to-monitors route, an admin-only one and a /system one."""

    __name__ = "demo"

    @hookimpl
    def pannier_register_routes(self, engine: object) -> Sequence[Route]:
        async def hello(name: str) -> dict[str, str]:
            return {"hello": name, "shout": request.args.get("shout", "no")}

        async def reset() -> None:
            return None

        async def info() -> dict[str, int]:
            return {"channels": 0}

        return [
            Route(
                "GET",
                "/extensions/demo/hello/<name>",
                hello,
                roles=("monitor",),
                summary="Say hello",
            ),
            Route("POST", "/extensions/demo/_reset", reset, roles=("admin",)),
            Route("GET", "/system/demo-info", info),
        ]


async def test_plugin_routes_are_served_with_their_roles(start_api: StartApi) -> None:
    api = await start_api(plugins=[DemoPlugin()])
    monitor = await api.add_user("mona", "monitor")
    async with api.client(auth=monitor) as client:
        hello = await client.get("/api/extensions/demo/hello/ann", params={"shout": "yes"})
        reset = await client.post("/api/extensions/demo/_reset")
        info = await client.get("/api/system/demo-info")
    async with api.client() as admin:
        admin_reset = await admin.post("/api/extensions/demo/_reset")
        document = (await admin.get("/api/openapi.json")).json()
    async with api.client(auth=None) as anonymous:
        refused = await anonymous.get("/api/extensions/demo/hello/ann")
    assert hello.json() == {"hello": "ann", "shout": "yes"}
    assert reset.status_code == 403
    assert info.json() == {"channels": 0}
    assert admin_reset.status_code == 204
    assert refused.status_code == 401
    operation = document["paths"]["/api/extensions/demo/hello/{name}"]["get"]
    assert operation["summary"] == "Say hello"
    assert operation["tags"] == ["plugin:demo"]
    assert document["paths"]["/api/extensions/demo/_reset"]["post"]["x-roles"] == ["admin"]
    assert "/api/system/demo-info" in document["paths"]
