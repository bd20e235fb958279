"""Networking helpers for listener connectors (public kernel API)."""

from __future__ import annotations

import trio


async def open_listeners(
    host: str, port: int, *, what: str, backlog: int | None = None
) -> tuple[list[trio.SocketListener], tuple[str, int]]:
    """Bind TCP listeners on ``host:port`` (all addresses when ``host`` is empty) and return
    them with the address actually bound (useful with port 0).

    With port 0 a name with several addresses would get a different port on each; only one
    listener is kept then, so the port reported is the one clients reach. A failure raises
    ``OSError`` whose text names ``what`` (``"TCP Listener"``) and the address.
    """
    where = f"{host or '*'}:{port}"
    try:
        listeners = await trio.open_tcp_listeners(port, host=host or None, backlog=backlog)
    except OSError as exc:
        raise OSError(exc.errno, f"{what} cannot listen on {where}: {exc.strerror or exc}") from exc
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            extra.socket.close()
        listeners = listeners[:1]
    name = listeners[0].socket.getsockname()
    return listeners, (str(name[0]), int(name[1]))
