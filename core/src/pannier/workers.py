"""Several engine processes on one node: ``pannier run --workers N`` (``server.workers``).

One Python process runs on one core. ``pannier run`` with ``server.workers`` above 1 becomes a
small supervisor that starts that many engine processes ("workers") from the same
configuration and keeps them running. They share what a cluster of nodes shares (the database,
each with its own server id) and, on one machine, the listening ports as well: listeners bind
with ``SO_REUSEPORT`` and the kernel spreads new connections over the workers.

What each worker runs:

* every worker deploys every channel and receives on its listeners; its messages carry its own
  server id, so its queues, its recovery after a crash and its statistics rows are its own (as
  on separate nodes: mirth-compat §3.5);
* worker 0 alone serves the HTTP API, runs the plugins' services and polls (File Reader,
  Database Reader): a file or row is picked up once, not once per worker. The API reads
  statistics and messages from the database, so it shows every worker's;
* channel changes through the API (deploy, undeploy, start, stop, pause...) answer 409: they
  would reach worker 0 only. Change the channel files and restart.

The supervisor starts worker 0 first and the others once it is ready (the database schema
and the channels' tables then exist), restarts a worker that dies (its recovery finishes what
it had accepted), and on SIGTERM or SIGINT passes SIGTERM to every worker, which drain
gracefully, and exits when they have. Workers stop by themselves if the supervisor is killed.
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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pannier.config import ConfigError

__all__ = [
    "WORKER_ENV",
    "Worker",
    "current_worker",
    "pin_to_cpu",
    "supervise",
    "worker_server_id",
]

log = logging.getLogger("pannier.workers")

WORKER_ENV = "PANNIER_WORKER"
"""``<index>/<count>`` in a worker's environment, set by the supervisor."""
READY_FD_ENV = "PANNIER_WORKER_READY_FD"
"""The pipe a worker writes one line to once its channels are deployed."""

RESTART_DELAY = 1.0
"""Seconds before a dead worker is started again; doubled (up to 30 s) while it keeps dying
within a minute of its start, so a worker that cannot start does not spin."""


@dataclass(frozen=True)
class Worker:
    """Which of the node's engine processes this one is."""

    index: int = 0
    count: int = 1

    @property
    def primary(self) -> bool:
        """Worker 0: serves the API, runs services, polls."""
        return self.index == 0

    @property
    def shares_ports(self) -> bool:
        """Listeners bind with ``SO_REUSEPORT`` (several workers listen on each port)."""
        return self.count > 1


def current_worker() -> Worker:
    """This process's place among the node's workers (``Worker(0, 1)`` for a plain engine)."""
    value = os.environ.get(WORKER_ENV, "")
    if not value:
        return Worker()
    index, _, count = value.partition("/")
    try:
        worker = Worker(int(index), int(count))
    except ValueError:
        worker = Worker(-1, 0)
    if not 0 <= worker.index < worker.count:
        raise ValueError(f"{WORKER_ENV}={value!r}: expected <index>/<count>, such as 0/2")
    return worker


def worker_server_id(base: str, worker: Worker) -> str:
    """Worker 0 keeps the node's server id; worker ``i`` gets a UUID derived from it, the same
    at every start, so a restarted worker recovers the messages it had accepted."""
    if worker.primary:
        return base
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pannier-worker:{base}/{worker.index}"))


def pin_to_cpu(setting: str, worker: Worker) -> int | None:
    """Apply ``server.cpu_affinity`` to this process; returns the CPU chosen, or None.

    Why: the engine runs Python on one core at a time anyway (the GIL), and every hand-off to
    a worker thread (a database transaction, a batch of file writes) wakes a thread and then
    the event loop again. On a VM a wake-up on another CPU costs tens of microseconds; with
    every thread of the process on one CPU it costs a fraction of that (bench/RESULTS.md:
    +12 to +19% msg/s on SQLite). The price: a process pinned to a CPU cannot borrow another
    one, so give each process its own (``auto`` does, for a node's workers).
    """
    text = setting.strip()
    if not text or not hasattr(os, "sched_setaffinity"):
        return None
    if text == "auto":
        choices = sorted(os.sched_getaffinity(0))
    else:
        choices = [int(part) for part in text.split(",")]
    cpu = choices[worker.index % len(choices)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        allowed = ",".join(str(n) for n in sorted(os.sched_getaffinity(0)))
        raise ConfigError(
            f"server.cpu_affinity = {setting!r}: cannot run on CPU {cpu} ({exc.strerror}); "
            f"expected CPUs this process may use: {allowed}"
        ) from None
    return cpu


def report_ready() -> None:
    """Tell the supervisor this worker is serving (no-op outside a supervised worker)."""
    fd = os.environ.pop(READY_FD_ENV, "")
    if fd:
        with contextlib.suppress(OSError):  # the supervisor is gone: PR_SET_PDEATHSIG stops us
            os.write(int(fd), b"ready\n")
            os.close(int(fd))


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
