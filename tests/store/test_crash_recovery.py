"""Kill -9 under load: after a restart every acknowledged message is stored exactly once and
complete, nothing is left unfinished, and another server's rows are untouched."""

from __future__ import annotations

import os
import re
import signal

import pytest
import sqlalchemy as sa
import trio

from tests.reliability.helpers import load, scaled, start_engine
from tests.test_end_to_end import example_channel, write_config


@pytest.mark.slow
def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path, hl7_sample, db_url) -> None:
    config = write_config(tmp_path, example_channel())
    template = hl7_sample("adt_a01.hl7")
    process, port = start_engine(config, db_url)
    acked: list[str] = []
    sent: list[str] = []
    target = int(scaled(150, 3000))  # acknowledged messages before the kill
    try:

        async def run_and_kill() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: load(port, template, acked, scaled(10.0, 60.0), sent=sent)
                )
                while len(acked) < target:
                    await trio.sleep(0.005)
                os.kill(process.pid, signal.SIGKILL)

        trio.run(run_and_kill)
    finally:
        process.kill()
        process.wait()
    assert len(acked) >= target

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
        f"SIGKILL under load: sent {len(sent)}, acknowledged {len(acked)}, "
        f"stored {len(by_control_id)}, unfinished at kill "
        f"{unfinished_before}, lost {len(missing)}, duplicated {len(duplicated)}"
    )
    assert missing == [] and duplicated == [] and incomplete == []
    assert [(bool(p), s.strip()) for p, s in other] == [(False, "R")], (
        "another server's message is not ours to recover"
    )
    written = {p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert {template.replace(b"MSG00001", c.encode()) for c in acked} <= written
