"""Kill -9 under load: after a restart every acknowledged message is stored exactly once and
complete, nothing is left unfinished, and another server's rows are untouched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from pannier_mllp import MLLPClientError, send_mllp

from tests.test_end_to_end import example_channel, write_config

BIN = Path(sys.executable).parent


def start_engine(config: Path, url: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [str(BIN / "pannier"), "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PANNIER_DATABASE_URL=url),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            return process, int(match.group(1))
    process.kill()
    raise AssertionError("engine did not start listening")


async def load(port: int, template: bytes, acked: list[str], stop_after: float) -> None:
    counter = iter(range(1_000_000))

    async def client() -> None:
        while True:
            control_id = f"CRASH{next(counter):06d}"
            message = template.replace(b"MSG00001", control_id.encode())
            try:
                (ack,) = await send_mllp("127.0.0.1", port, [message], timeout=5)
            except (MLLPClientError, OSError):
                return  # the engine died under us: what was acknowledged is what counts
            if b"MSA|AA|" + control_id.encode() in ack:
                acked.append(control_id)

    with trio.move_on_after(stop_after):
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(client)


@pytest.mark.slow
def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path, hl7_sample, db_url) -> None:
    config = write_config(tmp_path, example_channel())
    template = hl7_sample("adt_a01.hl7")
    process, port = start_engine(config, db_url)
    acked: list[str] = []
    try:

        async def run_and_kill() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load, port, template, acked, 10.0)
                while len(acked) < 150:
                    await trio.sleep(0.005)
                os.kill(process.pid, signal.SIGKILL)

        trio.run(run_and_kill)
    finally:
        process.kill()
        process.wait()
    assert len(acked) >= 150

    server_id = (tmp_path / "var" / "server.id").read_text().split("=", 1)[1].strip()
    database = sa.create_engine(db_url)
    n = 1
    with database.begin() as db:
        db.execute(
            sa.text(f"INSERT INTO D_M{n} (ID, SERVER_ID, PROCESSED) VALUES (999999, 'node-b', :f)"),
            {"f": False},
        )
        db.execute(
            sa.text(
                f"INSERT INTO D_MM{n} (ID, MESSAGE_ID, SERVER_ID, STATUS, "
                f"CONNECTOR_NAME, SEND_ATTEMPTS, ERROR_CODE, CHAIN_ID, ORDER_ID) "
                f"VALUES (0, 999999, 'node-b', 'R', 'Source', 0, 0, 0, 0)"
            )
        )
        unfinished_before = db.execute(
            sa.text(f"SELECT COUNT(*) FROM D_M{n} WHERE PROCESSED = :f AND SERVER_ID = :s"),
            {"f": False, "s": server_id},
        ).scalar()

    process, _port = start_engine(config, db_url)  # listening means recovery has finished
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    with database.connect() as db:
        stored = db.execute(
            sa.text(
                f"SELECT MC.CONTENT, M.PROCESSED, S.STATUS, D.STATUS FROM D_M{n} M "
                f"JOIN D_MC{n} MC ON MC.MESSAGE_ID = M.ID AND MC.METADATA_ID = 0 AND "
                f"MC.CONTENT_TYPE = 1 "
                f"JOIN D_MM{n} S ON S.MESSAGE_ID = M.ID AND S.ID = 0 "
                f"LEFT JOIN D_MM{n} D ON D.MESSAGE_ID = M.ID AND D.ID = 1 "
                f"WHERE M.SERVER_ID = :s"
            ),
            {"s": server_id},
        ).all()
        other = [
            tuple(r)
            for r in db.execute(
                sa.text(
                    f"SELECT M.PROCESSED, MM.STATUS FROM D_M{n} M JOIN D_MM{n} MM ON "
                    f"MM.MESSAGE_ID = M.ID WHERE M.ID = 999999"
                )
            ).all()
        ]
    database.dispose()
    by_control_id: dict[str, list[tuple]] = {}
    for content, processed, source, destination in stored:
        control_id = re.search(r"\|(CRASH\d+)\|", content).group(1)
        by_control_id.setdefault(control_id, []).append(
            (bool(processed), source.strip(), destination and destination.strip())
        )
    missing = [c for c in acked if c not in by_control_id]
    duplicated = [c for c, found in by_control_id.items() if len(found) > 1]
    incomplete = [c for c, found in by_control_id.items() if found != [(True, "T", "S")]]
    print(
        f"sent/acknowledged {len(acked)}, stored {len(by_control_id)}, unfinished at kill "
        f"{unfinished_before}, lost {len(missing)}, duplicated {len(duplicated)}"
    )
    assert missing == [] and duplicated == [] and incomplete == []
    assert [(bool(p), s.strip()) for p, s in other] == [(False, "R")], (
        "another server's message is not ours to recover"
    )
    written = {p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert {template.replace(b"MSG00001", c.encode()) for c in acked} <= written
