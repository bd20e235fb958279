"""The three-channel example (examples/three-channels) as a user runs it: MLLP in -> Channel
Writer -> a channel that writes a file and posts to HTTP -> an HTTP Listener channel; one
message, and its trace through the stored rows of every channel."""

from __future__ import annotations

import socket
from pathlib import Path
from xml.etree import ElementTree

import sqlalchemy as sa
import trio
from pannier.config import load_config
from pannier.engine import Engine
from pannier_mllp import send_mllp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "three-channels"
ADT_IN = "7b0a5a4e-3c1d-4d7e-9b2a-1f3e5d7c9a01"
FAN_OUT = "7b0a5a4e-3c1d-4d7e-9b2a-1f3e5d7c9a02"
HTTP_IN = "7b0a5a4e-3c1d-4d7e-9b2a-1f3e5d7c9a03"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def example_channels(target: Path, http_port: int) -> None:
    """The example's channel files with free ports and the output under ``target``."""
    target.mkdir()
    for path in sorted((EXAMPLE / "channels").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        text = text.replace("port = 6671", "port = 0").replace(
            'host = "0.0.0.0"', 'host = "127.0.0.1"'
        )
        text = text.replace("port = 8071", f"port = {http_port}")
        text = text.replace("127.0.0.1:8071/", f"127.0.0.1:{http_port}/")
        text = text.replace('"../../var/three-channels/', f'"{target.parent}/')
        (target / path.name).write_text(text, encoding="utf-8")


def query(engine: Engine, sql: str) -> list[tuple]:
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


async def test_one_message_crosses_three_channels_and_its_trace_is_stored(
    nursery: trio.Nursery, tmp_path: Path, hl7_sample
) -> None:
    http_port = free_port()
    example_channels(tmp_path / "channels", http_port)
    # the example's own pannier.toml; data and channel files moved by environment overrides
    config = load_config(
        EXAMPLE / "pannier.toml",
        environ={
            "PANNIER_SERVER_DATA_DIR": str(tmp_path / "var"),
            "PANNIER_CHANNELS_PATHS": str(tmp_path / "channels" / "*.toml"),
        },
    )
    engine = Engine(config)
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors
    assert set(engine.channels) == {ADT_IN, FAN_OUT, HTTP_IN}
    mllp_port = engine.channels[ADT_IN].bound[1]

    message = hl7_sample("adt_a01.hl7")
    (ack,) = await send_mllp("127.0.0.1", mllp_port, [message], timeout=20)
    assert b"MSA|AA|MSG00001" in ack, ack

    # channel 2 wrote the file (named by channel 1's message id and the MRN it passed on)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["1-555-44-3333.hl7"]
    assert (tmp_path / "out" / written[0]).read_bytes() == message
    # channel 3 received the POST and stored it
    assert [p.name for p in (tmp_path / "http").iterdir()] == ["1.hl7"]

    local = dict((cid, n) for n, cid in query(engine, "SELECT * FROM D_CHANNELS"))
    one, two, three = local[ADT_IN], local[FAN_OUT], local[HTTP_IN]
    assert query(engine, f"SELECT MESSAGE_ID, ID, CONNECTOR_NAME, STATUS FROM D_MM{one}") == [
        (1, 0, "Source", "T"),
        (1, 1, "To ADT fan-out", "S"),
    ]
    assert query(
        engine, f"SELECT MESSAGE_ID, ID, CONNECTOR_NAME, STATUS FROM D_MM{two} ORDER BY 1, 2"
    ) == [(1, 0, "Source", "T"), (1, 1, "Write file", "S"), (1, 2, "Post to HTTP", "S")]
    assert query(
        engine, f"SELECT MESSAGE_ID, ID, CONNECTOR_NAME, STATUS FROM D_MM{three} ORDER BY 1, 2"
    ) == [(1, 0, "Source", "T"), (1, 1, "Write file", "S")]
    (raw_three,) = query(
        engine, f"SELECT CONTENT FROM D_MC{three} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1"
    )[0]
    assert raw_three.replace("\n", "\r").rstrip("\r") == message.decode().rstrip("\r")

    # the link: channel 2's source map names channel 1 and its message
    [(source_map,)] = query(
        engine, f"SELECT CONTENT FROM D_MC{two} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 15"
    )
    entries = _map_entries(source_map)
    assert entries["sourceChannelId"] == ("string", ADT_IN)
    (channel_one_message,) = query(engine, f"SELECT ID FROM D_M{one}")[0]
    assert entries["sourceMessageId"] == ("int", str(channel_one_message))
    assert entries["mrn"] == ("string", "555-44-3333")
    # the README's query finds channel 2's rows from channel 1's ids
    linked = query(
        engine,
        f"SELECT MM.MESSAGE_ID, MM.ID FROM D_MC{two} MC JOIN D_MM{two} MM "
        f"ON MM.MESSAGE_ID = MC.MESSAGE_ID WHERE MC.METADATA_ID = 0 AND MC.CONTENT_TYPE = 15 "
        f"AND MC.CONTENT LIKE '%<string>sourceChannelId</string>%<string>{ADT_IN}</string>%' "
        f"AND MC.CONTENT LIKE '%<string>sourceMessageId</string>%<int>{channel_one_message}"
        f"</int>%' ORDER BY 1, 2",
    )
    assert linked == [(1, 0), (1, 1), (1, 2)]
    # and channel 3's request carried channel 1's message id
    [(http_map,)] = query(
        engine, f"SELECT CONTENT FROM D_MC{three} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 15"
    )
    assert _map_entries(http_map)["query"] == ("string", f"sourceMessageId={channel_one_message}")


def _map_entries(text: str) -> dict[str, tuple[str, str]]:
    """A stored map (XStream ``<map><entry><string>key</string><type>value</type>...``)."""
    out = {}
    for entry in ElementTree.fromstring(text).iter("entry"):
        key, value = list(entry)
        out[key.text or ""] = (value.tag, value.text or "")
    return out
