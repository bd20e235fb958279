"""Cluster buses: how engines tell each other about deploys, state changes and configuration.

The local bus (the embedded default) delivers only inside this process. Shared buses (database
events table, Redis pub/sub) come as plugins.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass(frozen=True)
class BusEvent:
    """One event: a topic (``"channel.deploy"``), a JSON-able payload and the sender's server id."""

    topic: str
    payload: Mapping[str, Any]
    sender: str


class ClusterBus(ABC):
    """Publish/subscribe between engines."""

    @abstractmethod
    async def publish(self, event: BusEvent) -> None:
        """Deliver ``event`` to every subscriber of its topic on every engine (this one too)."""

    @abstractmethod
    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[BusEvent]:
        """A channel receiving every later event of ``topic``. Close it to unsubscribe."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work (polling, connections). The engine starts it in its nursery."""
        task_status.started()
        await trio.sleep_forever()


@dataclass(frozen=True)
class ClusterBusSpec:
    """A bus a plugin provides, selected by ``[cluster] bus = "<name>"``."""

    name: str
    factory: Callable[[Mapping[str, Any]], ClusterBus]
    description: str = ""
    shared: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)


class LocalBus(ClusterBus):
    """In-process delivery: enough for one engine, and the reference for the bus conformance kit."""

    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: dict[str, list[trio.MemorySendChannel[BusEvent]]] = {}

    async def publish(self, event: BusEvent) -> None:
        alive = []
        for send in self._subscribers.get(event.topic, []):
            try:
                send.send_nowait(event)
                alive.append(send)
            except trio.WouldBlock:
                alive.append(send)  # a slow subscriber loses this event rather than block us
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        self._subscribers[event.topic] = alive

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[BusEvent]:
        send, receive = trio.open_memory_channel[BusEvent](self._buffer)
        self._subscribers.setdefault(topic, []).append(send)
        return receive
