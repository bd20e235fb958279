"""Map backends: where the global map, global channel maps and configuration map live.

A map backend stores string-keyed values per *scope* (``"global"``, ``"global_channel:<id>"``,
``"configuration"``). The in-memory backend here is the embedded default; shared backends
(database, Redis) come as plugins and make the maps cluster-wide.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class MapBackend(ABC):
    """Storage for Mirth's shared maps. All methods are async so network backends fit."""

    @abstractmethod
    async def get(self, scope: str, key: str) -> Any:
        """The value, or ``None`` when the key is absent."""

    @abstractmethod
    async def put(self, scope: str, key: str, value: Any) -> None:
        """Set a value; visible to every reader of the backend once this returns."""

    @abstractmethod
    async def remove(self, scope: str, key: str) -> None:
        """Remove a key; removing an absent key is not an error."""

    @abstractmethod
    async def items(self, scope: str) -> dict[str, Any]:
        """A snapshot of the whole scope."""

    @abstractmethod
    async def clear(self, scope: str) -> None:
        """Remove every key of the scope."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections. Called once at engine stop."""


@dataclass(frozen=True)
class MapBackendSpec:
    """A map backend a plugin provides, selected by ``[cluster] map_backend = "<name>"``."""

    name: str
    factory: Callable[[Mapping[str, Any]], MapBackend]
    """Builds the backend from its settings (``[plugins.<name>]`` in the config file)."""
    description: str = ""
    shared: bool = False
    """True when several engines see the same data (cluster-safe)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)


class MemoryMapBackend(MapBackend):
    """Maps in this process's memory: fast, lost at restart, not shared between nodes."""

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, Any]] = {}

    async def get(self, scope: str, key: str) -> Any:
        return self._scopes.get(scope, {}).get(key)

    async def put(self, scope: str, key: str, value: Any) -> None:
        self._scopes.setdefault(scope, {})[key] = value

    async def remove(self, scope: str, key: str) -> None:
        self._scopes.get(scope, {}).pop(key, None)

    async def items(self, scope: str) -> dict[str, Any]:
        return dict(self._scopes.get(scope, {}))

    async def clear(self, scope: str) -> None:
        self._scopes.pop(scope, None)
