"""A thread of one's own for blocking work handed over from trio, one call after another.

``trio.to_thread.run_sync`` is the right tool for occasional blocking calls. For work handed
over for every message — a destination's file writes, the store's transactions — its
hand-off costs more than the work: a capacity limiter, the thread cache (naming the thread),
delivering the result, several passes of the scheduler. :class:`OwnThread` keeps one thread
that takes calls from a queue and wakes each caller through its trio token. Measured on the
bench machine (bench/RESULTS.md, session 6): the File Writer, storage DISABLED, 2,266 →
3,033 msg/s and engine CPU 0.43 → 0.32 ms per message; the store's SQLite commits, DEVELOPMENT
storage, 865 → 1,021 msg/s.

Calls run in the order they were handed over, one at a time: one thread per resource that
should not wait for another (a destination, a database connection), so that a hung file
system holds up only its own destination.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

__all__ = ["OwnThread"]

T = TypeVar("T")


class _Call:
    __slots__ = ("args", "done", "error", "fn", "result", "token")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.token = trio.lowlevel.current_trio_token()
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class OwnThread:
    """A thread that runs the calls given to :meth:`run`, in order.

    The thread starts with the first call and ends at :meth:`stop` (or :meth:`close`) once
    the calls handed over before it are done; a later call starts a new one. It is a daemon
    thread: a process exiting does not wait for it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        """Held to hand a call over and by the thread deciding to end: no call is left
        behind a thread that ends."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread; its result, or its exception raised here.

        The call runs to its end whatever becomes of the calling task (a thread cannot be
        stopped halfway), so the wait is shielded from cancellation, as
        ``trio.to_thread.run_sync``'s is by default.
        """
        call = _Call(fn, args)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            self._calls.put(call)
        with trio.CancelScope(shield=True):
            await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Ask the thread to end after the calls already handed over (without waiting)."""
        if self._thread is not None:
            self._calls.put(None)

    async def stop(self) -> None:
        """End the thread after the calls already handed over, and wait for it. A caller
        that gives up waiting (cancelled) leaves the thread to finish by itself."""
        thread = self._thread
        if thread is not None:
            self._calls.put(None)
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)

    def _serve(self) -> None:
        ending = False
        while True:
            if ending:
                with self._lock:  # a call handed over now is in the queue, or starts a thread
                    if self._calls.empty():
                        self._thread = None
                        return
            call = self._calls.get()
            if call is None:
                ending = True  # once the calls before it (and any since) are done
                continue
            try:
                call.result = call.fn(*call.args)
            except BaseException as exc:  # the caller's to raise
                call.error = exc
            # If the trio run that was waiting has ended, there is nobody to wake.
            with contextlib.suppress(trio.RunFinishedError):
                call.token.run_sync_soon(call.done.set)
