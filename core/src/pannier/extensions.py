"""Extension objects plugins contribute besides connectors and backends: background services,
API routes and CLI commands."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from pannier.engine import Engine


class Service(Protocol):
    """A long-running task the engine starts in its nursery after the store is ready and
    cancels at shutdown (after the channels have drained)."""

    name: str

    async def run(
        self, engine: Engine, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; call ``task_status.started()`` once ready."""
        ...


@dataclass(frozen=True)
class Route:
    """An HTTP API route a plugin adds.

    ``path`` is relative to ``/api`` and must start with ``/extensions/<plugin>/`` or
    ``/system/``. ``roles`` lists the roles allowed to call it (empty: any logged-in user).
    """

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    roles: Sequence[str] = field(default_factory=tuple)
    summary: str = ""


@dataclass(frozen=True)
class CliCommand:
    """A ``pannier <name>`` sub-command a plugin adds."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    """Adds the command's arguments to its sub-parser."""
    run: Callable[[argparse.Namespace], int]
    """Runs the command; the return value is the process exit code."""
