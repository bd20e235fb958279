"""What the reliability tests share: an engine in a subprocess, an MLLP load that records what
was acknowledged, the stored messages counted by control id, and the counts each test prints.

The normal test run collects a shortened form of every scenario; ``make reliability`` sets
``PANNIER_RELIABILITY_FULL=1`` for the full sizes (:func:`scaled`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from pannier_mllp import MLLPClientError, send_mllp

BIN = Path(sys.executable).parent
FULL = os.environ.get("PANNIER_RELIABILITY_FULL") == "1"


def scaled(ci: float, full: float) -> float:
    """``full`` in the full ``make reliability`` run, else the shortened ``ci`` size."""
    return full if FULL else ci


def unavailable(message: str) -> None:
    """Skip, or fail when the services are required (CI)."""
    if os.environ.get("PANNIER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def start_engine(
    config: Path, url: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """``pannier run`` on ``config`` with ``url`` as its database; returns once its (single)
    TCP Listener is listening, which is after recovery has finished."""
    process = subprocess.Popen(
        [str(BIN / "pannier"), "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PANNIER_DATABASE_URL=url, **(env or {})),
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            _drain(process)
            return process, int(match.group(1))
    process.kill()
    raise AssertionError("engine did not start listening")


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the engine's log so that a full pipe never blocks it."""
    import threading

    def read() -> None:
        assert process.stderr is not None
        for _line in process.stderr:
            pass

    threading.Thread(target=read, daemon=True).start()


async def load(
    port: int,
    template: bytes,
    acked: list[str],
    stop_after: float,
    *,
    prefix: str = "CRASH",
    connections: int = 6,
    sent: list[str] | None = None,
    until_broken: bool = True,
) -> None:
    """Send copies of ``template`` (MSH-10 ``MSG00001`` replaced by ``<prefix><n>``) over
    ``connections`` clients for ``stop_after`` seconds; ``acked`` gets each control id
    acknowledged with AA. A client whose connection fails stops (``until_broken``, the engine
    died) or tries the next message (the engine is expected back)."""
    counter = iter(range(1_000_000))

    async def client() -> None:
        while True:
            control_id = f"{prefix}{next(counter):06d}"
            message = template.replace(b"MSG00001", control_id.encode())
            if sent is not None:
                sent.append(control_id)
            try:
                (ack,) = await send_mllp("127.0.0.1", port, [message], timeout=15)
            except (MLLPClientError, OSError):
                if until_broken:
                    return  # the engine died under us: what was acknowledged is what counts
                await trio.sleep(0.05)
                continue
            if b"MSA|AA|" + control_id.encode() in ack:
                acked.append(control_id)

    with trio.move_on_after(stop_after):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(client)


def stored_control_ids(url: str, pattern: str, table_number: int = 1) -> Counter[str]:
    """How many stored messages (RAW source content) carry each control id matching
    ``pattern`` (a regex with one group)."""
    regex = re.compile(pattern)
    database = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with database.connect() as db:
            rows = db.execute(
                sa.text(
                    f"SELECT CONTENT FROM D_MC{table_number} "
                    "WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1"
                )
            ).scalars()
            found: Counter[str] = Counter()
            for content in rows:
                found.update(regex.findall(content))
    finally:
        database.dispose()
    return found


@dataclass
class Counts:
    """What a scenario sent, what was acknowledged and what was found afterwards."""

    sent: int
    acknowledged: int
    stored: int
    lost: int
    duplicated: int

    @classmethod
    def of(cls, sent: int, acknowledged: list[str], found: Counter[str]) -> Counts:
        return cls(
            sent=sent,
            acknowledged=len(acknowledged),
            stored=sum(1 for c in set(acknowledged) if found[c] > 0),
            lost=sum(1 for c in set(acknowledged) if found[c] == 0),
            duplicated=sum(1 for c in found if found[c] > 1),
        )

    def show(self, scenario: str, stored: str = "stored") -> str:
        text = (
            f"{scenario}: sent {self.sent}, acknowledged {self.acknowledged}, "
            f"{stored} {self.stored}, lost {self.lost}, duplicated {self.duplicated}"
        )
        print(text)
        return text
