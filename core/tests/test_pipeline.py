"""The message pipeline end to end inside one engine: statuses, content rows, custom
metadata, statistics, response selection, storage modes and observer hooks, checked in the
database the way Mirth would read them."""

from __future__ import annotations

import trio
from pannier import RawMessage, Status
from pannier.runtime.response import destinations_status

from .conftest import rows
from .testkit import KitPlugin, channel_toml

CHANNEL = "11111111-2222-3333-4444-555555555555"


async def dispatch(kit: KitPlugin, text: str, **source_map):
    return await kit.sources[-1].dispatcher.dispatch(RawMessage(text, dict(source_map)))


async def flush(engine) -> None:
    for deployed in engine.channels.values():
        await deployed._flush_statistics()


async def test_a_message_is_stored_as_mirth_stores_it(start_engine) -> None:
    kit = KitPlugin()
    engine = await start_engine([channel_toml()], plugins=[kit])
    result = await dispatch(kit, "ORU|hello", remoteAddress="10.0.0.7")
    assert result.response is not None and result.response.message == "ACK:S"
    mid = result.message_id
    (local_id,) = rows(
        engine, f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = '{CHANNEL}'"
    )[0]
    n = local_id
    assert rows(engine, f"SELECT PROCESSED, SERVER_ID FROM D_M{n} WHERE ID = {mid}") == [
        (1, engine.server_id)
    ]
    connectors = rows(
        engine,
        f"SELECT ID, STATUS, CONNECTOR_NAME, CHAIN_ID, ORDER_ID, "
        f"SEND_ATTEMPTS, ERROR_CODE FROM D_MM{n} WHERE MESSAGE_ID = {mid} "
        f"ORDER BY ID",
    )
    assert connectors == [
        (0, "T", "Source", 0, 0, 1, 0),
        (1, "S", "First", 1, 1, 1, 0),
        (2, "S", "Second", 1, 2, 1, 0),
    ]
    content = rows(
        engine,
        f"SELECT METADATA_ID, CONTENT_TYPE, DATA_TYPE FROM D_MC{n} "
        f"WHERE MESSAGE_ID = {mid} ORDER BY METADATA_ID, CONTENT_TYPE",
    )
    assert content == [
        (0, 1, "TESTTEXT"),
        (0, 4, "TESTTEXT"),
        (0, 6, None),
        (0, 9, None),
        (0, 11, None),
        (0, 15, None),
        (1, 4, "TESTTEXT"),
        (1, 5, None),
        (1, 6, "TESTTEXT"),
        (2, 4, "TESTTEXT"),
        (2, 5, None),
        (2, 6, "TESTTEXT"),
    ], "destination RAW (1) is never stored; the source keeps raw, encoded, maps, response"
    (raw,) = rows(
        engine,
        f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} "
        f"AND METADATA_ID = 0 AND CONTENT_TYPE = 1",
    )[0]
    assert raw == "ORU|hello"
    (sent,) = rows(
        engine,
        f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} "
        f"AND METADATA_ID = 1 AND CONTENT_TYPE = 5",
    )[0]
    assert f"<label>one {mid}</label>" in sent, "templates are rendered per message"
    (source_map,) = rows(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} AND CONTENT_TYPE = 15"
    )[0]
    assert "<string>remoteAddress</string>" in source_map and "10.0.0.7" in source_map
    (response,) = rows(
        engine,
        f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} "
        f"AND METADATA_ID = 0 AND CONTENT_TYPE = 6",
    )[0]
    assert "<status>SENT</status>" in response and "<message>ACK:S</message>" in response
    assert rows(engine, f"SELECT METADATA_ID, SOURCE, TYPE FROM D_MCM{n}") == [(0, "lab", "ORU")]
    assert [r.properties["label"] for r in kit.echoes[0].sent] == [f"one {mid}"]


async def test_templates_inside_tables_and_lists_are_rendered(start_engine) -> None:
    """An HTTP Sender's headers and parameters are tables of lists: their ``${...}`` are
    rendered per message like a plain text property."""
    kit = KitPlugin()
    destination = """
[[destinations]]
name = "Tables"
transportName = "Echo"
inboundDataType = "TESTTEXT"
[destinations.properties]
headers = { "X-Message-Id" = ["${message.messageId}", "static"], "X-Channel" = ["${channelName}"] }
"""
    engine = await start_engine([channel_toml(destinations=destination)], plugins=[kit])
    result = await dispatch(kit, "ORU|hello")
    (sent,) = kit.echoes[0].sent
    assert sent.properties["headers"] == {
        "X-Message-Id": [str(result.message_id), "static"],
        "X-Channel": [engine.channels[CHANNEL].channel.name],
    }


async def test_statistics_follow_mirths_rules(start_engine) -> None:
    kit = KitPlugin()
    engine = await start_engine([channel_toml()], plugins=[kit])
    for text in ("ORU|1", "ORU|2", "BAD|3"):
        await dispatch(kit, text)
    await flush(engine)
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    stats = {
        r[0]: r[1:]
        for r in rows(
            engine,
            f"SELECT METADATA_ID, RECEIVED, FILTERED, SENT, ERROR, RECEIVED_LIFETIME, "
            f"SENT_LIFETIME FROM D_MS{n} WHERE SERVER_ID = '{engine.server_id}'",
        )
    }
    # Aggregate: RECEIVED from the source only, SENT from destinations, ERROR from both.
    assert stats[None] == (3, 0, 4, 1, 3, 4)
    assert stats[0] == (3, 0, 0, 1, 3, 0)
    assert stats[1] == (2, 0, 2, 0, 2, 2)
    assert stats[2] == (2, 0, 2, 0, 2, 2)
    # A second flush with nothing new changes nothing; new work is added to the same rows.
    await flush(engine)
    await dispatch(kit, "ORU|4")
    await flush(engine)
    assert rows(engine, f"SELECT RECEIVED, SENT FROM D_MS{n} WHERE METADATA_ID IS NULL") == [(4, 6)]


async def test_unparseable_message_is_stored_as_an_error_and_answered_with_an_error(
    start_engine,
) -> None:
    kit = KitPlugin()
    engine = await start_engine([channel_toml()], plugins=[kit])
    result = await dispatch(kit, "BAD|nothing here")
    assert result.response is not None
    assert result.response.status == Status.ERROR and result.response.message == "ACK:E"
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    mid = result.message_id
    assert rows(engine, f"SELECT ID, STATUS, ERROR_CODE FROM D_MM{n} WHERE MESSAGE_ID = {mid}") == [
        (0, "E", 1)
    ]
    assert rows(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} AND CONTENT_TYPE = 12"
    ) == [("message starts with BAD",)]
    assert rows(engine, f"SELECT PROCESSED FROM D_M{n} WHERE ID = {mid}") == [(1,)]
    assert kit.echoes[0].sent == [], "nothing reaches the destinations"


async def test_a_failing_destination_is_an_error_with_its_reason_stored(start_engine) -> None:
    destinations = """
[[destinations]]
name = "Refused"
transportName = "Echo"
inboundDataType = "TESTTEXT"
[destinations.properties]
fail = "raise"

[[destinations]]
name = "Fine"
transportName = "Echo"
inboundDataType = "TESTTEXT"
waitForPrevious = false
"""
    kit = KitPlugin()
    engine = await start_engine([channel_toml(destinations=destinations)], plugins=[kit])
    result = await dispatch(kit, "ORU|x")
    assert result.response.message == "ACK:E", "ERROR outranks SENT"
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    mid = result.message_id
    assert rows(
        engine,
        f"SELECT ID, STATUS, ERROR_CODE, CHAIN_ID, ORDER_ID FROM D_MM{n} "
        f"WHERE MESSAGE_ID = {mid} ORDER BY ID",
    ) == [(0, "T", 0, 0, 0), (1, "E", 1, 1, 1), (2, "S", 0, 2, 1)]
    (error,) = rows(
        engine,
        f"SELECT CONTENT FROM D_MC{n} WHERE MESSAGE_ID = {mid} AND "
        f"METADATA_ID = 1 AND CONTENT_TYPE = 12",
    )[0]
    assert "downstream refused the connection" in error


async def test_response_variable_choices(start_engine) -> None:
    kit = KitPlugin()
    channels = [
        channel_toml(channel_id="00000000-0000-0000-0000-00000000000" + str(i), response=r)
        for i, r in enumerate(
            [
                "None",
                "Auto-generate (Before processing)",
                "Auto-generate (After source transformer)",
                "d2",
            ]
        )
    ]
    await start_engine(channels, plugins=[kit])
    answers = []
    for source in kit.sources:
        good = await source.dispatcher.dispatch(RawMessage("ORU|1"))
        bad = await source.dispatcher.dispatch(RawMessage("BAD|1"))
        answers.append(
            (good.response and good.response.message, bad.response and bad.response.message)
        )
    assert answers == [(None, None), ("ACK:S", "ACK:S"), ("ACK:T", "ACK:E"), ("echo:two", None)]


def test_destinations_completed_status_matches_mirths_response_selector() -> None:
    assert destinations_status([Status.SENT, Status.QUEUED], 2) == Status.QUEUED
    assert destinations_status([Status.FILTERED, Status.ERROR], 2) == Status.ERROR
    assert destinations_status([Status.FILTERED], 1) == Status.FILTERED
    assert destinations_status([], 2) == Status.ERROR, "no destination reached"
    assert destinations_status([], 0) == Status.SENT
    assert destinations_status([Status.SENT], 2) == Status.SENT, (
        "as Java: a present status replaces the missing-destination ERROR"
    )


async def test_storage_modes(start_engine) -> None:
    kit = KitPlugin()
    ids = {
        mode: f"00000000-0000-0000-0000-0000000000{i:02d}"
        for i, mode in enumerate(["PRODUCTION", "RAW", "METADATA", "DISABLED"])
    }
    engine = await start_engine(
        [channel_toml(channel_id=i, storage=m) for m, i in ids.items()], plugins=[kit]
    )
    by_channel = {s.setup.channel_id: s for s in kit.sources}
    stored = {}
    for mode, channel_id in ids.items():
        result = await by_channel[channel_id].dispatcher.dispatch(RawMessage("ORU|1"))
        assert result.response.message == "ACK:S"
        n = rows(
            engine, f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = '{channel_id}'"
        )[0][0]
        stored[mode] = (
            len(rows(engine, f"SELECT ID FROM D_M{n}")),
            sorted({r[0] for r in rows(engine, f"SELECT CONTENT_TYPE FROM D_MC{n}")}),
        )
    assert stored == {
        "PRODUCTION": (1, [1, 4, 5, 6, 9, 11]),
        "RAW": (1, [1]),
        "METADATA": (1, []),
        "DISABLED": (0, []),
    }


async def test_concurrent_messages_get_unique_ascending_ids(start_engine) -> None:
    kit = KitPlugin()
    engine = await start_engine(
        [channel_toml(threads=8)], plugins=[kit], config="[database]\nsequence_block_size = 7\n"
    )
    results = []

    async def send(i: int) -> None:
        results.append(await dispatch(kit, f"ORU|{i}"))

    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(send, i)
    ids = sorted(r.message_id for r in results)
    assert len(set(ids)) == 300
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert rows(engine, f"SELECT COUNT(*), COUNT(DISTINCT ID) FROM D_M{n} WHERE PROCESSED = 1") == [
        (300, 300)
    ]
    (next_id,) = rows(engine, f"SELECT ID FROM D_MSQ{n}")[0]
    assert next_id > ids[-1] and (next_id - 1) % 7 == 0, "whole blocks reserved"


async def test_observer_hooks_fire_in_order(start_engine) -> None:
    kit = KitPlugin()
    engine = await start_engine([channel_toml()], plugins=[kit])
    result = await dispatch(kit, "ORU|1")
    engine.request_stop()
    with trio.fail_after(10):
        while ("undeployed", CHANNEL) not in kit.events:
            await trio.sleep(0.01)
    names = [name for name, _ in kit.events]
    assert (
        names.index("deployed")
        < names.index("started")
        < names.index("finished")
        < names.index("stopping")
        < names.index("undeployed")
    )
    assert ("state", (0, "idle", {"connections": 0})) in kit.events
    assert ("finished", (result.message_id, {0: "T", 1: "S", 2: "S"})) in kit.events


async def test_statistics_equal_counts_derived_from_connector_rows(start_engine) -> None:
    destinations = """
[[destinations]]
name = "Fine"
transportName = "Echo"
inboundDataType = "TESTTEXT"

[[destinations]]
name = "Refusing"
transportName = "Echo"
inboundDataType = "TESTTEXT"
waitForPrevious = false
[destinations.properties]
fail = "error"
"""
    kit = KitPlugin()
    engine = await start_engine([channel_toml(destinations=destinations, threads=4)], plugins=[kit])

    async def send(i: int) -> None:
        await dispatch(kit, ("BAD|" if i % 7 == 0 else "ORU|") + str(i))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(send, i)
    await flush(engine)
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]

    def derived(where: str) -> tuple:
        return rows(
            engine,
            f"SELECT COUNT(*), SUM(STATUS = 'F'), SUM(STATUS = 'S'), "
            f"SUM(STATUS = 'E') FROM D_MM{n} WHERE {where}",
        )[0]

    stats = {
        r[0]: tuple(r[1:])
        for r in rows(engine, f"SELECT METADATA_ID, RECEIVED, FILTERED, SENT, ERROR FROM D_MS{n}")
    }
    for metadata_id in (0, 1, 2):
        assert stats[metadata_id] == derived(f"ID = {metadata_id}"), metadata_id
    received, _, _, _ = derived("ID = 0")
    _, filtered, sent, errors = derived("1 = 1")
    assert stats[None] == (received, filtered, sent, errors)
    assert stats[None] == (200, 0, 171, 29 + 171)


async def test_the_router_dispatches_into_another_deployed_channel(start_engine) -> None:
    import pytest
    from pannier import ChannelNotDeployedError

    kit = KitPlugin()
    target = "22222222-2222-3333-4444-555555555555"
    engine = await start_engine([channel_toml(), channel_toml(channel_id=target)], plugins=[kit])
    setup = kit.sources[0].setup
    assert setup.router is engine and setup.should_poll() is True
    result = await setup.router.route(target, RawMessage("ORU|routed"))
    assert result.response.message == "ACK:S"
    n = rows(engine, f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = '{target}'")
    assert rows(engine, f"SELECT CONTENT FROM D_MC{n[0][0]} WHERE CONTENT_TYPE = 1") == [
        ("ORU|routed",)
    ]
    with pytest.raises(ChannelNotDeployedError, match="no channel with id 'nope'"):
        await setup.router.route("nope", RawMessage("x"))
