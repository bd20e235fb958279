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

The supervisor (:mod:`pannier.supervisor`) starts worker 0 first and the others once it is
ready, restarts a worker that dies (its recovery finishes what it had accepted), and on
SIGTERM or SIGINT has every worker drain and stop.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

from pannier.config import ConfigError
from pannier.supervisor import READY_FD_ENV, WORKER_ENV

__all__ = [
    "WORKER_ENV",
    "Worker",
    "current_worker",
    "pin_to_cpu",
    "report_ready",
    "worker_server_id",
]


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
        raise ConfigError(f"{WORKER_ENV}={value!r}: expected <index>/<count>, such as 0/2")
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
