"""Channel Reader / Channel Writer in a running engine: channel-to-channel routing on the
embedded SQLite store, with every hop's rows checked as Mirth would find them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from pannier import RawMessage, Status
from pannier.config import load_config
from pannier.engine import Engine
from pannier.runtime.xstream import parse_map

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"
D = "dddddddd-0000-4000-8000-000000000004"

RESPONSE, PROCESSING_ERROR, SOURCE_MAP = 6, 12, 15  # Mirth's content types


def channel(
    channel_id: str,
    name: str,
    *,
    writer: dict[str, Any] | None = None,
    file_pattern: str | None = None,
    response: str = "",
    postprocessor: str = "",
    transformer: str = "",
) -> str:
    """A channel with a Channel Reader source (RAW) and optionally a Channel Writer (d1) and a
    File Writer into ``out/`` (d2)."""
    lines = [f'id = "{channel_id}"', f'name = "{name}"']
    if postprocessor:
        lines.append(f"postprocessingScript = '''{postprocessor}'''")
    lines += ["[source]", 'transportName = "Channel Reader"', 'inboundDataType = "RAW"']
    if response:
        lines.append(f'responseVariable = "{response}"')
    if transformer:
        lines += [
            "[[source.transformer.steps]]",
            'kind = "python"',
            f"code = '''{transformer}'''",
        ]
    if writer is not None:
        lines += [
            "[[destinations]]",
            "metaDataId = 1",
            'name = "To next channel"',
            'transportName = "Channel Writer"',
            'inboundDataType = "RAW"',
            'outboundDataType = "RAW"',
            "[destinations.properties]",
        ]
        for key, value in writer.items():
            if isinstance(value, list):
                lines.append(f"{key} = [{', '.join(repr(v) for v in value)}]")
            else:
                lines.append(f'{key} = "{value}"')
    if file_pattern is not None:
        lines += [
            "[[destinations]]",
            "metaDataId = 2",
            'name = "Write file"',
            'transportName = "File Writer"',
            'inboundDataType = "RAW"',
            'outboundDataType = "RAW"',
            "[destinations.properties]",
            'directory = "out"',
            f'outputPattern = "{file_pattern}"',
            "outputAppend = false",
        ]
    return "\n".join(lines) + "\n"


async def start(nursery: trio.Nursery, tmp_path: Path, *channels: str) -> Engine:
    folder = tmp_path / "channels"
    folder.mkdir()
    for index, text in enumerate(channels):
        (folder / f"channel{index}.toml").write_text(text, encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n', encoding="utf-8"
    )
    engine = Engine(load_config(config, environ={}))
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors
    return engine


def query(engine: Engine, sql: str) -> list[tuple]:
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def local(engine: Engine, channel_id: str) -> int:
    ((n,),) = query(
        engine, f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = '{channel_id}'"
    )
    return int(n)


def content(engine: Engine, channel_id: str, metadata_id: int, content_type: int) -> list[str]:
    n = local(engine, channel_id)
    return [
        row[0]
        for row in query(
            engine,
            f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = {metadata_id} "
            f"AND CONTENT_TYPE = {content_type} ORDER BY MESSAGE_ID",
        )
    ]


def statuses(engine: Engine, channel_id: str) -> list[tuple]:
    n = local(engine, channel_id)
    return query(engine, f"SELECT MESSAGE_ID, ID, STATUS FROM D_MM{n} ORDER BY MESSAGE_ID, ID")


async def test_a_message_is_traced_through_both_channels(nursery, tmp_path) -> None:
    engine = await start(
        nursery,
        tmp_path,
        channel(
            A,
            "A",
            writer={"channelId": B, "mapVariables": ["patient", "ward", "missing"]},
            transformer='channel_map["ward"] = "W1"',
            response="d1",
        ),
        channel(
            B,
            "B",
            file_pattern="${sourceChannelId}-${sourceMessageId}.txt",
            response="Postprocessor",
            postprocessor='return "B got " + source_map["patient"] + " on " + source_map["ward"]',
        ),
    )
    result = await engine.route(A, RawMessage("hello", {"patient": "P1"}))
    assert result.message_id is not None
    a_id = result.message_id
    assert result.response is not None and result.response.status == Status.SENT
    assert result.response.message == "B got P1 on W1", "A's d1 answers with B's response"

    # B wrote the file named after where the message came from.
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [f"{A}-{a_id}.txt"]
    assert written[0].read_text() == "hello"

    # A's rows: source transformed, Channel Writer sent, its response stored.
    assert statuses(engine, A) == [(a_id, 0, "T"), (a_id, 1, "S")]
    (a_response,) = content(engine, A, 1, RESPONSE)
    assert "<status>SENT</status>" in a_response
    assert "<message>B got P1 on W1</message>" in a_response
    assert f"Message routed successfully to channel id: {B}" in a_response

    # B's rows: one message, its source map naming A's channel and message.
    b_rows = statuses(engine, B)
    assert [row[1:] for row in b_rows] == [(0, "T"), (2, "S")]
    (b_source_map,) = content(engine, B, 0, SOURCE_MAP)
    values = parse_map(b_source_map)
    assert values == {
        "sourceChannelId": A,
        "sourceMessageId": a_id,
        "patient": "P1",  # from A's source map
        "ward": "W1",  # from A's channel map
    }, "first hop: no id lists, map variables without a value are skipped"
    (b_raw,) = content(engine, B, 0, 1)
    assert b_raw == "hello"


async def test_channel_template_and_templated_channel_id(nursery, tmp_path) -> None:
    engine = await start(
        nursery,
        tmp_path,
        channel(
            A,
            "A",
            writer={
                "channelId": "${target}",
                "channelTemplate": "wrapped(${message.encodedData}) from ${channelName}",
            },
        ),
        channel(B, "B", file_pattern="${sourceMessageId}.txt"),
    )
    result = await engine.route(A, RawMessage("x", {"target": B}))
    assert (tmp_path / "out" / f"{result.message_id}.txt").read_text() == "wrapped(x) from A"
    (b_raw,) = content(engine, B, 0, 1)
    assert b_raw == "wrapped(x) from A"


async def test_a_four_channel_chain_builds_the_id_lists(nursery, tmp_path) -> None:
    engine = await start(
        nursery,
        tmp_path,
        channel(A, "A", writer={"channelId": B, "mapVariables": ["patient"]}),
        channel(B, "B", writer={"channelId": C, "mapVariables": ["patient"]}),
        channel(C, "C", writer={"channelId": D, "mapVariables": ["patient"]}),
        channel(D, "D", file_pattern="${sourceMessageId}.txt"),
    )
    result = await engine.route(A, RawMessage("hop", {"patient": "P9"}))
    a_id = result.message_id
    (b_map,) = [parse_map(text) for text in content(engine, B, 0, SOURCE_MAP)]
    (c_map,) = [parse_map(text) for text in content(engine, C, 0, SOURCE_MAP)]
    (d_map,) = [parse_map(text) for text in content(engine, D, 0, SOURCE_MAP)]
    b_id = statuses(engine, B)[0][0]
    c_id = statuses(engine, C)[0][0]
    assert b_map == {"sourceChannelId": A, "sourceMessageId": a_id, "patient": "P9"}
    assert c_map["sourceChannelId"] == B and c_map["sourceMessageId"] == b_id
    assert d_map["sourceChannelId"] == C and d_map["sourceMessageId"] == c_id
    assert d_map["patient"] == "P9", "passed along every hop"
    # Lists are stored as their text by the kernel's map serializer; compare that text.
    assert c_map["sourceChannelIds"] == str([A, B])
    assert c_map["sourceMessageIds"] == str([a_id, b_id])
    assert d_map["sourceChannelIds"] == str([A, B, C])
    assert d_map["sourceMessageIds"] == str([a_id, b_id, c_id])
    assert (tmp_path / "out" / f"{c_id}.txt").read_text() == "hop"
    for channel_id in (A, B, C):
        assert [s[1:] for s in statuses(engine, channel_id)] == [(0, "T"), (1, "S")]


async def test_channel_id_none_sends_nothing(nursery, tmp_path) -> None:
    engine = await start(
        nursery,
        tmp_path,
        channel(A, "A", writer={"channelId": "none"}, response="d1"),
        channel(B, "B", file_pattern="${sourceMessageId}.txt"),
    )
    result = await engine.route(A, RawMessage("nowhere"))
    assert result.response is not None and result.response.status == Status.SENT
    assert result.response.message == ""
    assert statuses(engine, A) == [(result.message_id, 0, "T"), (result.message_id, 1, "S")]
    assert statuses(engine, B) == []
    assert not (tmp_path / "out").exists()
    (a_response,) = content(engine, A, 1, RESPONSE)
    assert "Message routed successfully to channel id: none" in a_response


async def test_an_undeployed_target_is_an_error_naming_the_channel(nursery, tmp_path) -> None:
    missing = "99999999-0000-4000-8000-00000000dead"
    engine = await start(
        nursery, tmp_path, channel(A, "A", writer={"channelId": missing}, response="d1")
    )
    result = await engine.route(A, RawMessage("lost"))
    assert result.response is not None and result.response.status == Status.ERROR
    assert statuses(engine, A) == [(result.message_id, 0, "T"), (result.message_id, 1, "E")]
    (error,) = content(engine, A, 1, PROCESSING_ERROR)
    assert missing in error and "not deployed" in error
    (a_response,) = content(engine, A, 1, RESPONSE)
    assert f"Error routing message to channel id: {missing}" in a_response
