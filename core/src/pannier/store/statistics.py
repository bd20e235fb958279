"""Channel statistics with Java Mirth's rules (mirth-compat.md §2.4).

Counts accumulate in memory as messages commit and are flushed to ``D_MS<n>`` about once a
second, as ``DonkeyStatisticsUpdater`` does: the aggregate row (``METADATA_ID IS NULL``) first,
then each connector row, ``UPDATE ... GREATEST(x + delta, 0)`` and an INSERT when no row
was there yet. Rows are keyed by this server's id; readers sum every server's rows.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from pannier.model.status import Status

TRACKED = (Status.RECEIVED, Status.FILTERED, Status.SENT, Status.ERROR)
COLUMNS = {
    Status.RECEIVED: "RECEIVED",
    Status.FILTERED: "FILTERED",
    Status.SENT: "SENT",
    Status.ERROR: "ERROR",
}

Deltas = dict[int | None, dict[Status, int]]


class StatisticsAccumulator:
    """Pending statistic deltas for one channel, thread-safe, drained by each flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Deltas = defaultdict(lambda: dict.fromkeys(TRACKED, 0))

    def update(self, metadata_id: int, new: Status | None, previous: Status | None) -> None:
        """Record one status transition of a connector message.

        ``previous=None`` for an insert. RECEIVED is never decremented (``JdbcDao.updateStatus``);
        the aggregate row takes RECEIVED from the source only, SENT from destinations only, and
        FILTERED and ERROR from both (``Statistics.update``).
        """
        if previous == Status.RECEIVED:
            previous = None
        with self._lock:
            for status, delta in ((new, 1), (previous, -1)):
                if status is None or status not in COLUMNS:
                    continue
                self._pending[metadata_id][status] += delta
                if _counts_in_aggregate(metadata_id, status):
                    self._pending[None][status] += delta

    def drain(self) -> Deltas:
        """Take every pending delta (the caller writes them or hands them back with
        :meth:`restore` when the write failed)."""
        with self._lock:
            pending = {
                key: dict(value) for key, value in self._pending.items() if any(value.values())
            }
            self._pending.clear()
        return pending

    def restore(self, deltas: Deltas) -> None:
        with self._lock:
            for key, values in deltas.items():
                for status, delta in values.items():
                    self._pending[key][status] += delta


def _counts_in_aggregate(metadata_id: int, status: Status) -> bool:
    if status == Status.RECEIVED:
        return metadata_id == 0
    if status == Status.SENT:
        return metadata_id > 0
    return True
