"""The database restarts while the engine is under load: the engine reconnects by itself, and
every acknowledged message is stored exactly once.

Each test runs its own private server (tests/reliability/servers.py), never the shared one
other tests use: restarting that would break them. PostgreSQL is restarted as ``pg_ctlcluster
... restart`` does (``pg_ctl restart -m fast``: sessions are ended); MariaDB is stopped with
SIGTERM (``start-stop-daemon --stop``) and started again.
"""

from __future__ import annotations

import os
import signal

import pytest
import trio

from tests.reliability.helpers import (
    FULL,
    Counts,
    load,
    scaled,
    start_engine,
    stored_control_ids,
    unavailable,
)
from tests.reliability.servers import (
    PrivateMariaDB,
    PrivatePostgres,
    ServerUnavailable,
    create_database,
)
from tests.test_end_to_end import example_channel, write_config


def restart_under_load(server_class, tmp_path, hl7_sample) -> Counts:
    try:
        server = server_class()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"private {server_class.name} server: {exc}")
    try:
        url = create_database(server.url, "pannier_reliability")
        config = write_config(tmp_path, example_channel())
        process, port = start_engine(config, url)
        sent: list[str] = []
        acked: list[str] = []
        before_restart = int(scaled(100, 1000))
        after: list[int] = []
        try:

            async def run() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        lambda: load(
                            port,
                            hl7_sample("adt_a01.hl7"),
                            acked,
                            scaled(12.0, 60.0),
                            prefix="DBR",
                            sent=sent,
                            until_broken=False,
                        )
                    )
                    while len(acked) < before_restart:
                        await trio.sleep(0.01)
                    await trio.to_thread.run_sync(server.restart)
                    after.append(len(acked))

            trio.run(run)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        assert process.returncode == 0, "the engine stopped cleanly after the restart"
        found = stored_control_ids(url, r"\|(DBR\d{6})\|")
        counts = Counts.of(len(sent), acked, found)
        counts.show(
            f"{server_class.name} restart under load ({len(acked) - after[0]} acknowledged "
            "after it)"
            if after
            else f"{server_class.name} restart under load"
        )
        assert after and len(acked) > after[0], "messages were acknowledged after the restart"
        assert counts.lost == 0 and counts.duplicated == 0
        return counts
    finally:
        server.remove()


@pytest.mark.slow
def test_postgres_restart_under_load_loses_nothing(tmp_path, hl7_sample) -> None:
    restart_under_load(PrivatePostgres, tmp_path, hl7_sample)


@pytest.mark.slow
@pytest.mark.skipif(
    not FULL and os.environ.get("PANNIER_TEST_REQUIRE_SERVICES") != "1",
    reason="the shortened run restarts PostgreSQL; make reliability and CI add MariaDB",
)
def test_mariadb_restart_under_load_loses_nothing(tmp_path, hl7_sample) -> None:
    restart_under_load(PrivateMariaDB, tmp_path, hl7_sample)
