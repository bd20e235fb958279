"""Message store throughput: messages made durable per second, one at a time and
group-committed, on SQLite, MariaDB and PostgreSQL.

Each message is what the pipeline writes for the example channel in DEVELOPMENT storage:
a "received" unit (D_M, source D_MM, RAW, SOURCE_MAP) then a "processed" unit (source status,
ENCODED, CONNECTOR_MAP, D_MCM, destination D_MM, ENCODED/SENT/RESPONSE, source RESPONSE and
RESPONSE_MAP, PROCESSED = TRUE): two durable commits and 15 rows per message. ``--clients``
messages are in flight at once (1 = one at a time; more lets the committer group them).

    .venv/bin/python bench/store.py --url sqlite:///tmp/bench.db --clients 1,64
    .venv/bin/python bench/store.py --url mysql+pymysql://root@127.0.0.1/pannier_bench
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import trio
from pannier.model.status import ContentType, Status
from pannier.sequences import BlockAllocator
from pannier.store.store import (
    INSERT_CONNECTOR,
    UPDATE_CONNECTOR,
    UPDATE_MESSAGE,
    ChannelStore,
    Store,
    Unit,
)

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = (ROOT / "tests" / "fixtures" / "hl7" / "adt_a01.hl7").read_bytes().decode()  # keep CRs


async def one_message(store: Store, cs: ChannelStore, server_id: str) -> None:
    now = store.now()
    first = Unit(new_message_for=cs)

    def build(mid: int) -> None:
        cs.add_received(first, mid, now)
        cs.add_content(first, mid, 0, ContentType.RAW, MESSAGE, "HL7V2")
        cs.add_content(first, mid, 0, ContentType.SOURCE_MAP, "<map/>", "HL7V2")

    first.build = build
    await store.commit(first)
    mid = first.message_id
    assert mid is not None
    second = Unit()
    second.add(
        UPDATE_CONNECTOR,
        cs.update_connector,
        {
            "b_message_id": mid,
            "b_metadata_id": 0,
            "STATUS": Status.TRANSFORMED.value,
            "ERROR_CODE": 0,
            "SEND_ATTEMPTS": 1,
            "RESPONSE_DATE": now,
        },
    )
    for kind in (
        ContentType.ENCODED,
        ContentType.CONNECTOR_MAP,
        ContentType.RESPONSE,
        ContentType.RESPONSE_MAP,
    ):
        cs.add_content(
            second, mid, 0, kind, MESSAGE if kind == ContentType.ENCODED else "<x/>", "HL7V2"
        )
    cs.add_custom_metadata(second, mid, 0, {"SOURCE": "GOODHEALTH", "TYPE": "ADT-A01"})
    second.add(
        INSERT_CONNECTOR,
        cs.insert_connector,
        {
            "ID": 1,
            "MESSAGE_ID": mid,
            "SERVER_ID": server_id,
            "RECEIVED_DATE": now,
            "STATUS": "S",
            "CONNECTOR_NAME": "Write file",
            "SEND_ATTEMPTS": 1,
            "SEND_DATE": now,
            "RESPONSE_DATE": now,
            "ERROR_CODE": 0,
            "CHAIN_ID": 1,
            "ORDER_ID": 1,
        },
    )
    for kind in (ContentType.ENCODED, ContentType.SENT, ContentType.RESPONSE):
        cs.add_content(
            second, mid, 1, kind, MESSAGE if kind == ContentType.ENCODED else "<x/>", "HL7V2"
        )
    second.add(UPDATE_MESSAGE, cs.mark_processed, {"b_message_id": mid})
    await store.commit(second)


async def run(url: str, clients: int, messages: int) -> float:
    server_id = str(uuid.uuid4())
    store = Store(url, server_id, BlockAllocator(100), pool_size=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.create_schema()
        cs = await store.open_channel(str(uuid.uuid4()))
        columns = [("SOURCE", "STRING"), ("TYPE", "STRING")]
        await store.add_metadata_columns(cs, columns)
        cs.set_metadata_columns(columns)
        per_client = messages // clients

        async def client() -> None:
            for _ in range(per_client):
                await one_message(store, cs, server_id)

        started = time.perf_counter()
        async with trio.open_nursery() as load:
            for _ in range(clients):
                load.start_soon(client)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    await store.aclose()
    return per_client * clients / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:////tmp/pannier-bench-store.db")
    parser.add_argument(
        "--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64]
    )
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    if args.url.startswith("sqlite:///"):
        Path(args.url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    backend = sa.engine.make_url(args.url).get_backend_name()
    for clients in args.clients:
        rate = trio.run(run, args.url, clients, args.messages)
        print(
            f"{backend}: {clients} message(s) in flight: {rate:,.0f} messages/s stored "
            f"({args.messages} messages, 2 commits and 15 rows each)"
        )


if __name__ == "__main__":
    main()
