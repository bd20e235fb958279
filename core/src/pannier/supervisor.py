"""The supervisor of a node's engine workers (``pannier run --workers N``; see
:mod:`pannier.workers` for what each worker does).

It imports only the standard library and runs as a process of its own (``pannier run``
replaces itself with ``python -P .../pannier/supervisor.py``), so it holds about 10 MiB instead
of the 65 MiB of an engine's imports, for a process that only starts, watches and stops the
workers:

* worker 0 first, the others once it reports ready (the database schema and the channels'
  tables then exist); worker 0 failing to start ends the node with its status;
* a worker that exits is started again after 1 s, doubling up to 30 s while it keeps dying
  within a minute of its start; its own server id lets its recovery finish what it had
  accepted;
* SIGTERM or SIGINT: SIGTERM to every worker (each drains gracefully), exit when all have.
  Workers get SIGTERM from the kernel if the supervisor dies, even by SIGKILL (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("pannier.workers")

WORKER_ENV = "PANNIER_WORKER"
"""``<index>/<count>`` in a worker's environment, set by the supervisor."""
READY_FD_ENV = "PANNIER_WORKER_READY_FD"
"""The pipe a worker writes one line to once its channels are deployed."""

RESTART_DELAY = 1.0
"""Seconds before a dead worker is started again; doubled (up to 30 s) while it keeps dying
within a minute of its start, so a worker that cannot start does not spin."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Child:
    def __init__(self, index: int, count: int, argv: Sequence[str]) -> None:
        self.index = index
        read, write = os.pipe()
        env = dict(os.environ)
        env[WORKER_ENV] = f"{index}/{count}"
        env[READY_FD_ENV] = str(write)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            env=env,
            pass_fds=(write,),
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        os.close(write)
        self._ready = read

    def wait_ready(self) -> bool:
        """Block until the worker reports ready (True) or exits first (False)."""
        fd, self._ready = self._ready, -1
        with os.fdopen(fd, "rb") as pipe:
            line = pipe.readline()  # empty when the worker exits without reporting
        return bool(line)

    def close_ready(self) -> None:
        fd, self._ready = self._ready, -1
        if fd >= 0:
            os.close(fd)


def supervise(argv: Sequence[str], count: int) -> int:
    """Run ``count`` workers of ``argv`` (a ``pannier run`` command line) until a signal.

    Returns the exit status: that of worker 0 when it fails to start, else 0 when every
    worker stopped cleanly on request, else the first non-zero status."""
    stopping = False
    children: dict[int, _Child] = {}

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("received %s: stopping %d workers", signal.Signals(signum).name, count)
        stopping = True
        for child in children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            if stopping:
                break
            child = _Child(index, count, argv)
            children[index] = child
            if not child.wait_ready():
                status = child.process.wait()
                if not stopping:
                    log.error("worker %d exited with status %d before it was ready", index, status)
                    on_signal(signal.SIGTERM, None)
                    _wait_all(children)
                    return status or 1
        log.info("%d workers running", len(children))
        delays = dict.fromkeys(children, RESTART_DELAY)
        while not stopping:
            time.sleep(0.2)
            for index, child in list(children.items()):
                exited = child.process.poll()
                if exited is None or stopping:
                    continue
                lived = time.monotonic() - child.started
                delay = delays[index] if lived < 60 else RESTART_DELAY
                log.error(
                    "worker %d (pid %d) exited with status %d after %.0f s; restarting in %.0f s",
                    index,
                    child.process.pid,
                    exited,
                    lived,
                    delay,
                )
                child.close_ready()
                deadline = time.monotonic() + delay
                while not stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
                if stopping:
                    break
                children[index] = _Child(index, count, argv)
                children[index].close_ready()  # nobody waits: the others are serving
                delays[index] = min(delay * 2, 30.0)
        return _wait_all(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_all(children: dict[int, _Child]) -> int:
    worst = 0
    for child in children.values():
        status = child.process.wait()
        child.close_ready()
        if status not in (0, -signal.SIGTERM) and not worst:
            worst = status
    return worst


def main(args: Sequence[str]) -> int:
    """``supervisor.py COUNT LOG_LEVEL -- COMMAND...``: supervise COUNT workers of COMMAND."""
    count, level, separator, *argv = args
    if separator != "--" or not argv:
        raise SystemExit("usage: supervisor.py COUNT LOG_LEVEL -- COMMAND...")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    log.info("starting %s engine workers (server.workers)", count)
    return supervise(argv, int(count))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
