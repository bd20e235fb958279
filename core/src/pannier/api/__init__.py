"""Pannier's HTTP API: Quart on trio, served by Hypercorn inside the engine's nursery.

Module layout (one job each): ``app`` builds the Quart application for an engine and serves it;
``auth`` holds sessions, Basic auth, password hashing, roles and the login rate limit; one module
per area of routes (``channels``, ``messages``, ``server``, ``health``...), each a Quart blueprint.

Shared contract for route modules:

- :func:`current_engine` returns the :class:`~pannier.engine.Engine` the app serves.
- :func:`pannier.api.auth.requires` marks a view with the roles allowed to call it; the app
  enforces it for every request before the view runs (no decorator: any logged-in user).
- :class:`ApiError` raised anywhere in a view becomes a JSON 4xx ``{"error": message}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from quart import current_app

if TYPE_CHECKING:
    from pannier.engine import Engine


class ApiError(Exception):
    """A client error: the request was wrong in a way the message explains."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def current_engine() -> Engine:
    """The engine behind the app that is handling the current request."""
    return cast("Engine", current_app.config["PANNIER_ENGINE"])


def refuse_with_workers(what: str) -> None:
    """Raise 409 when this node runs several engine processes (``server.workers``): ``what``
    would change worker 0 only, the process serving the API (see :mod:`pannier.workers`)."""
    count = current_engine().worker.count
    if count > 1:
        raise ApiError(
            409,
            f"{what}: this node runs {count} engine processes (server.workers = {count}) and "
            "the change would reach only the one serving the API; change the channel files "
            "and restart the engine, or run it with one worker",
        )
