"""Several Pannier *processes* on one database at the same moment: one schema, one admin, no
local channel id handed out twice, no message id handed out twice."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

WORKER = Path(__file__).resolve().parent / "worker.py"
SHARED = "5a4e1c7b-0000-4000-8000-000000000001"
PROCESSES = 3


def run_processes(url: str, *commands: list[str], timeout: float = 240) -> list[dict]:
    """Start one worker per command, all released at the same wall-clock moment."""
    start_at = time.time() + 2.0  # time for every interpreter to import pannier first
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, str(start_at), f"node-{i}", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, command in enumerate(commands)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker failed (exit {proc.returncode}):\n{err}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_three_processes_start_standalone_on_one_empty_database(db_url: str) -> None:
    own = [f"5a4e1c7b-0000-4000-8000-00000000010{i}" for i in range(PROCESSES)]
    results = run_processes(db_url, *(["start", SHARED, own[i]] for i in range(PROCESSES)))

    assert [r["mode"] for r in results] == ["standalone"] * PROCESSES
    assert scalar(db_url, "SELECT COUNT(*) FROM SCHEMA_INFO") == 1
    assert scalar(db_url, "SELECT VERSION FROM SCHEMA_INFO") == "4.5.2"
    assert scalar(db_url, "SELECT COUNT(*) FROM PERSON") == 1
    assert scalar(db_url, "SELECT USERNAME FROM PERSON") == "admin"
    assert scalar(db_url, "SELECT COUNT(*) FROM PERSON_PASSWORD") == 1
    assert scalar(db_url, "SELECT COUNT(*) FROM CONFIGURATION") == 6

    shared_ids = {r["shared"] for r in results}
    own_ids = [r["own"] for r in results]
    assert len(shared_ids) == 1, "every process found the same local id for the shared channel"
    assert sorted(shared_ids | set(own_ids)) == [1, 2, 3, 4], "no local channel id twice"
    assert scalar(db_url, "SELECT COUNT(*) FROM D_CHANNELS") == 4
    for n in range(1, 5):
        assert scalar(db_url, f"SELECT COUNT(*) FROM D_MM{n}") == 0
        if not db_url.startswith("postgresql"):
            assert scalar(db_url, f"SELECT ID FROM D_MSQ{n}") == 1, "one sequence row"


@pytest.mark.slow
def test_three_processes_allocate_message_ids_without_duplicates(db_url: str) -> None:
    count, block, threads = 2000, 5, 2
    results = run_processes(
        db_url, *(["ids", SHARED, str(count), str(block), str(threads)] for _ in range(PROCESSES))
    )
    ids = [i for r in results for i in r["ids"]]
    assert len(ids) == PROCESSES * count
    duplicates = len(ids) - len(set(ids))
    assert duplicates == 0, f"{duplicates} message id(s) handed out twice"
    # Every process used all the blocks it reserved, so together they used 1..N exactly.
    assert sorted(ids) == list(range(1, PROCESSES * count + 1))
