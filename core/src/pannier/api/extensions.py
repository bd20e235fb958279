"""Plugin routes (``pannier_register_routes``) mounted under ``/api``.

A :class:`pannier.extensions.Route` path is relative to ``/api`` and uses Quart's rule syntax
for parameters (``/extensions/demo/items/<item_id>``, ``<int:n>``). The handler is awaited with
the path parameters as keyword arguments inside the request context (``quart.request`` works);
what it returns is answered as Quart answers a view (a dict or list becomes JSON; ``None``
answers 204). ``roles`` are enforced like a core route's (empty: any logged-in user).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from quart import Response
from quart_trio import QuartTrio

from pannier.api.auth import ROLES
from pannier.extensions import Route
from pannier.plugins import PluginError

if TYPE_CHECKING:
    from pannier.engine import Engine


def _view(route: Route) -> Callable[..., Awaitable[Any]]:
    async def view(**params: Any) -> Any:
        result = await route.handler(**params)
        return Response("", status=204) if result is None else result

    view.__doc__ = route.summary or (route.handler.__doc__ or "").strip() or "Plugin route."
    view.pannier_roles = tuple(route.roles)  # type: ignore[attr-defined]
    view.pannier_plugin_route = True  # type: ignore[attr-defined]
    return view


def plugin_of(path: str) -> str:
    """The tag a plugin route is listed under: the plugin for /extensions/<plugin>/."""
    parts = path.strip("/").split("/")
    return parts[1] if parts[0] == "extensions" and len(parts) > 1 else "system"


def mount_plugin_routes(app: QuartTrio, engine: Engine) -> None:
    for index, route in enumerate(engine.routes):
        unknown = set(route.roles) - set(ROLES)
        if unknown:
            raise PluginError(
                f"route {route.method} {route.path}: unknown roles {sorted(unknown)}; "
                f"known: {', '.join(ROLES)}"
            )
        app.add_url_rule(
            f"/api{route.path}",
            endpoint=f"plugin_route_{index}",
            view_func=_view(route),
            methods=[route.method.upper()],
        )
