"""A whole engine in takeover mode on a database built by Mirth's own DDL: the example channel
(TCP Listener in MLLP mode -> File Writer) is deployed onto a Mirth channel that already has a
LOCAL_CHANNEL_ID and tables, a message is sent over a real socket, acknowledged, and stored in
Mirth's tables, continuing Mirth's message id sequence."""

from __future__ import annotations

from pathlib import Path

from pannier.config import load_config
from pannier.engine import Engine
from pannier_mllp import send_mllp

from .conftest import run_mirth_ddl
from .test_modes import kind_of, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "channels" / "adt-to-file.toml"
CHANNEL_ID = "5f2b4f7e-8c43-4d0e-9a39-7d8e2b7c6a01"  # the example channel's id


def write_config(tmp_path: Path, url: str) -> Path:
    channel = EXAMPLE.read_text(encoding="utf-8")
    channel = channel.replace("port = 6661", "port = 0").replace(
        'host = "0.0.0.0"', 'host = "127.0.0.1"'
    )
    channel = channel.replace('directory = "../var/out"', 'directory = "out"')
    assert f'id = "{CHANNEL_ID}"' in channel
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.toml").write_text(channel, encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text(
        f'[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n'
        f'[database]\nurl = "{url}"\nmode = "takeover"\n',
        encoding="utf-8",
    )
    return config


async def test_engine_takes_over_a_mirth_database(
    db_url: str, tmp_path: Path, nursery, hl7_sample
) -> None:
    kind = kind_of(db_url)
    # Mirth knows the channel as local id 3 (two others came and went) and has used ids 1..41.
    run_mirth_ddl(db_url, kind, {3: CHANNEL_ID})
    run(
        db_url, "SELECT setval('d_msq3', 41)" if kind == "postgres" else "UPDATE D_MSQ3 SET ID = 42"
    )

    engine = Engine(load_config(write_config(tmp_path, db_url), environ={}))
    await nursery.start(engine.run)  # the nursery is cancelled (engine stopped) after the test
    assert not engine.deploy_errors, engine.deploy_errors
    (deployed,) = engine.channels.values()
    assert deployed.store.local_channel_id == 3
    message = hl7_sample("adt_a01.hl7")
    (ack,) = await send_mllp("127.0.0.1", deployed.bound[1], [message], timeout=10)
    assert b"MSA|AA|MSG00001" in ack
    assert (tmp_path / "out" / "42.hl7").read_bytes() == message
    await deployed._flush_statistics()

    metadata = (
        'SELECT "SOURCE", "TYPE" FROM D_MCM3'
        if kind == "postgres"
        else "SELECT SOURCE, TYPE FROM D_MCM3"
    )
    (messages, connectors, raw, custom, stats, channels) = run(
        db_url,
        "SELECT ID, PROCESSED, SERVER_ID FROM D_M3",
        "SELECT ID, STATUS, CONNECTOR_NAME FROM D_MM3 ORDER BY ID",
        "SELECT CONTENT FROM D_MC3 WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1",
        metadata,
        "SELECT METADATA_ID, RECEIVED, SENT FROM D_MS3 ORDER BY METADATA_ID",
        "SELECT COUNT(*) FROM D_CHANNELS",
    )
    assert [(m[0], bool(m[1]), m[2]) for m in messages] == [(42, True, engine.server_id)]
    assert connectors == [(0, "T", "Source"), (1, "S", "Write file")]
    assert raw == [(message.decode(),)]
    assert custom == [("GOODHEALTH", "ADT-A01")]
    assert sorted(stats, key=lambda r: -1 if r[0] is None else r[0]) == [
        (None, 1, 1),
        (0, 1, 0),
        (1, 1, 1),
    ]
    assert channels == [(1,)], "no new channel row: the Mirth channel was reused"
