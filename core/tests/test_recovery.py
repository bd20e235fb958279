"""Recovery at channel start: a message interrupted between its two transactions is finished
by the next start of the same server, sent once, in order; other servers' rows are left
alone."""

from __future__ import annotations

import trio
from pannier import RawMessage

from .conftest import rows
from .testkit import KitPlugin, channel_toml

BLOCKING = """
[[destinations]]
name = "Downstream"
transportName = "Echo"
inboundDataType = "TESTTEXT"
[destinations.properties]
fail = "{fail}"
label = "to downstream"
"""


async def test_interrupted_messages_are_finished_at_next_start(start_engine, tmp_path) -> None:
    kit = KitPlugin()
    async with trio.open_nursery() as crash:
        engine = await start_engine(
            [channel_toml(destinations=BLOCKING.format(fail="block"), threads=4)],
            plugins=[kit],
            within=crash,
        )
        for text in ("ORU|first", "ORU|second", "ORU|third"):
            crash.start_soon(kit.sources[-1].dispatcher.dispatch, RawMessage(text))
        n = None
        with trio.fail_after(10):
            while n is None or len(rows(engine, f"SELECT ID FROM D_M{n}")) < 3:
                await trio.sleep(0.01)
                found = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")
                n = found[0][0] if found else None
        # Another server's unfinished message in the same table must never be touched.
        with engine.store.engine.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO D_M{n} (ID, SERVER_ID, PROCESSED) VALUES (9999, 'other-node', 0)"
            )
            conn.exec_driver_sql(
                f"INSERT INTO D_MM{n} (ID, MESSAGE_ID, SERVER_ID, STATUS, CONNECTOR_NAME, "
                f"SEND_ATTEMPTS, ERROR_CODE, CHAIN_ID, ORDER_ID) VALUES "
                f"(0, 9999, 'other-node', 'R', 'Source', 0, 0, 0, 0)"
            )
        server_id = engine.server_id
        crash.cancel_scope.cancel()  # the node dies with three messages in flight

    assert (
        rows(
            engine,
            f"SELECT MM.STATUS, M.PROCESSED FROM D_M{n} M JOIN D_MM{n} MM ON "
            f"MM.MESSAGE_ID = M.ID AND MM.ID = 0 WHERE M.SERVER_ID = "
            f"'{server_id}'",
        )
        == [("R", 0)] * 3
    )

    revived = KitPlugin()
    engine = await start_engine(
        [channel_toml(destinations=BLOCKING.format(fail=""))], plugins=[revived]
    )
    assert engine.server_id == server_id, "the server id survives a restart"
    (deployed,) = engine.channels.values()
    assert deployed.recovered == 3
    stored = [
        raw
        for (raw,) in rows(
            engine, f"SELECT CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 1 ORDER BY MESSAGE_ID"
        )
    ]
    assert sorted(stored) == ["ORU|first", "ORU|second", "ORU|third"]
    assert [r.encoded for r in revived.echoes[0].sent] == stored, (
        "each sent once, in message id order"
    )
    assert rows(
        engine,
        f"SELECT M.ID, MM.ID, MM.STATUS, M.PROCESSED FROM D_M{n} M JOIN "
        f"D_MM{n} MM ON MM.MESSAGE_ID = M.ID WHERE M.SERVER_ID = "
        f"'{server_id}' ORDER BY M.ID, MM.ID",
    ) == [
        (1, 0, "T", 1),
        (1, 1, "S", 1),
        (2, 0, "T", 1),
        (2, 1, "S", 1),
        (3, 0, "T", 1),
        (3, 1, "S", 1),
    ]
    assert rows(
        engine,
        f"SELECT MM.STATUS, M.PROCESSED FROM D_M{n} M JOIN D_MM{n} MM ON "
        f"MM.MESSAGE_ID = M.ID WHERE M.ID = 9999",
    ) == [("R", 0)]


async def test_a_mirth_unfinished_message_resumes_only_unsent_destinations(start_engine) -> None:
    destinations = """
[[destinations]]
name = "Done before the crash"
transportName = "Echo"
inboundDataType = "TESTTEXT"

[[destinations]]
name = "Never sent"
transportName = "Echo"
inboundDataType = "TESTTEXT"
"""
    kit = KitPlugin()
    engine = await start_engine([channel_toml(destinations=destinations)], plugins=[kit])
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    sid = engine.server_id
    # What Java Mirth leaves when it dies after sending destination 1 and before 2 (T3).
    with engine.store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO D_M{n} (ID, SERVER_ID, PROCESSED) VALUES (500, '{sid}', 0)"
        )
        for mid, status in ((0, "T"), (1, "S"), (2, "R")):
            conn.exec_driver_sql(
                f"INSERT INTO D_MM{n} (ID, MESSAGE_ID, SERVER_ID, STATUS, CONNECTOR_NAME, "
                f"SEND_ATTEMPTS, ERROR_CODE, CHAIN_ID, ORDER_ID) VALUES "
                f"({mid}, 500, '{sid}', '{status}', 'x', 0, 0, {min(mid, 1)}, {mid})"
            )
        conn.exec_driver_sql(
            f"INSERT INTO D_MC{n} (METADATA_ID, MESSAGE_ID, CONTENT_TYPE, "
            f"CONTENT, IS_ENCRYPTED, DATA_TYPE) VALUES "
            f"(0, 500, 1, 'ORU|from mirth', 0, 'TESTTEXT')"
        )
    engine.request_stop()
    with trio.fail_after(10):
        while engine.channels:
            await trio.sleep(0.01)

    revived = KitPlugin()
    engine = await start_engine([channel_toml(destinations=destinations)], plugins=[revived])
    first, second = revived.echoes
    assert first.sent == [] and [r.encoded for r in second.sent] == ["ORU|from mirth"]
    assert rows(engine, f"SELECT ID, STATUS FROM D_MM{n} WHERE MESSAGE_ID = 500 ORDER BY ID") == [
        (0, "T"),
        (1, "S"),
        (2, "S"),
    ]
    assert rows(engine, f"SELECT PROCESSED FROM D_M{n} WHERE ID = 500") == [(1,)]
