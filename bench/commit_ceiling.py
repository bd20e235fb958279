"""The database's own durable-commit ceiling on this machine, without Pannier: T threads each
run ``INSERT one row; COMMIT`` in a loop for a few seconds (each commit waits for the log
flush; concurrent ones can share a flush: group commit). A message needs at least one such
commit, Pannier's synchronous path two, so this bounds the msg/s any engine can reach here.

    .venv/bin/python bench/commit_ceiling.py --url mysql+pymysql://root@127.0.0.1:3306/
    .venv/bin/python bench/commit_ceiling.py --url postgresql+psycopg://postgres@127.0.0.1/postgres
    .venv/bin/python bench/commit_ceiling.py --url sqlite:////tmp/ceiling.db
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import sqlalchemy as sa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server URL (a scratch table is used)")
    parser.add_argument("--threads", default="1,8,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=1, help="rows per transaction")
    parser.add_argument("--sqlite-sync", default="FULL", help="SQLite PRAGMA synchronous")
    args = parser.parse_args()
    engine = sa.create_engine(args.url, pool_size=32, max_overflow=0)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")
            dbapi_connection.execute(f"PRAGMA synchronous={args.sqlite_sync}")

    table = f"ceiling_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (k VARCHAR(40), v VARCHAR(1000))")
    payload = "x" * 900
    try:
        for threads in [int(t) for t in args.threads.split(",")]:
            counts = [0] * threads
            stop = time.monotonic() + args.seconds

            def work(i: int, stop: float = stop, counts: list[int] = counts) -> None:
                with engine.connect() as conn:
                    while time.monotonic() < stop:
                        with conn.begin():
                            conn.execute(
                                sa.text(f"INSERT INTO {table} (k, v) VALUES (:k, :v)"),
                                [{"k": str(i), "v": payload}] * args.rows,
                            )
                        counts[i] += 1

            workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
            started = time.monotonic()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.monotonic() - started
            print(
                f"{engine.dialect.name}: {threads} thread(s): {sum(counts) / elapsed:,.0f} "
                f"commits/s ({args.rows} row(s) each)"
            )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {table}")
        engine.dispose()


if __name__ == "__main__":
    main()
