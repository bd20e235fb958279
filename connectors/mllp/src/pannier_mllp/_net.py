"""Small socket helpers shared by the sender and the client."""

from __future__ import annotations

import math
import os
import select
import socket

import trio


def error_text(exc: BaseException) -> str:
    """A short human reason for a network error ("Connection refused", "timed out"...).

    ``trio.open_tcp_stream`` wraps the per-address failures in an ``ExceptionGroup``; their
    reasons are what a person needs to see.
    """
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons: list[str] = []
        for sub in cause.exceptions:
            reason = error_text(sub)
            if reason not in reasons:
                reasons.append(reason)
        return "; ".join(reasons)
    if isinstance(cause, OSError) and not isinstance(exc, OSError):
        return error_text(cause)  # trio.BrokenResourceError from ECONNRESET and the like
    if isinstance(exc, OSError):
        if isinstance(exc.errno, int) and exc.errno > 0 and not isinstance(exc, socket.gaierror):
            return os.strerror(exc.errno)  # trio's text also repeats the address
        if exc.strerror:
            return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def timeout_seconds(milliseconds: int) -> float:
    """Mirth's timeout convention: 0 means wait forever."""
    return milliseconds / 1000 if milliseconds > 0 else math.inf


def peer_closed_or_talking(stream: trio.SocketStream) -> bool:
    """True if an idle connection is readable: the peer closed it, reset it, or sent something
    nobody asked for. Either way it must not carry the next message (Mirth's
    ``remoteSideHasClosed`` check before reusing a kept-open socket)."""
    try:
        fd = stream.socket.fileno()
        if fd < 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        readable, _, errored = select.select([fd], [], [fd], 0)
        return bool(readable or errored)
    except (OSError, ValueError):
        return True
