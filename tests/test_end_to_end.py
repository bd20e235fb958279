"""One message end to end, as a user would run it: the example channel (TCP Listener in MLLP
mode -> File Writer, "Auto-generate (Destinations completed)") on the embedded SQLite store,
real sockets, real files, and the rows Mirth would find in the database."""

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
from pannier.config import load_config
from pannier.engine import Engine
from pannier_mllp import send_mllp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "channels" / "adt-to-file.toml"


def example_channel(port: int = 0, directory: str = "out") -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("port = 6661", f"port = {port}")
    text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    return text.replace('directory = "../var/out"', f'directory = "{directory}"')


def write_config(tmp_path: Path, channel: str) -> Path:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.toml").write_text(channel, encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n[api]\nport = 0\n',
        encoding="utf-8",
    )
    return config


def query(engine: Engine, sql: str) -> list[tuple]:
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line.split("|")[0]: line.split("|") for line in ack.decode().split("\r") if line}


async def start(nursery: trio.Nursery, config: Path) -> tuple[Engine, int]:
    engine = Engine(load_config(config, environ={}))
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors
    (deployed,) = engine.channels.values()
    return engine, deployed.bound[1]


async def test_adt_message_is_acknowledged_written_and_stored(
    nursery, tmp_path, hl7_sample
) -> None:
    engine, port = await start(nursery, write_config(tmp_path, example_channel()))
    message = hl7_sample("adt_a01.hl7")
    (ack,) = await send_mllp("127.0.0.1", port, [message], timeout=10)

    msa = segments(ack)["MSA"]
    assert msa[1] == "AA"
    assert msa[2] == "MSG00001", "MSA-2 echoes the message control id"
    msh = segments(ack)["MSH"]
    assert (msh[2], msh[3], msh[4], msh[5]) == ("PANNIER", "CLINIC", "REGADT", "GOODHEALTH")

    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 1
    assert written[0].read_bytes() == message, "the file holds the message as received"

    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    (message_id,) = [int(p.stem) for p in written]
    assert query(engine, f"SELECT PROCESSED, SERVER_ID FROM D_M{n}") == [(1, engine.server_id)]
    assert query(
        engine,
        f"SELECT ID, STATUS, CONNECTOR_NAME FROM D_MM{n} "
        f"WHERE MESSAGE_ID = {message_id} ORDER BY ID",
    ) == [(0, "T", "Source"), (1, "S", "Write file")]
    assert query(engine, f"SELECT METADATA_ID, CONTENT_TYPE FROM D_MC{n} ORDER BY 1, 2") == [
        (0, 1),
        (0, 4),
        (0, 6),
        (0, 9),
        (0, 11),
        (0, 15),
        (1, 4),
        (1, 5),
        (1, 6),
    ]
    (raw, data_type) = query(
        engine, f"SELECT CONTENT, DATA_TYPE FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1"
    )[0]
    assert raw == message.decode() and data_type == "HL7V2"
    (response,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 6"
    )[0]
    assert "<status>SENT</status>" in response and "MSA|AA|MSG00001" in response
    assert query(engine, f"SELECT SOURCE, TYPE FROM D_MCM{n}") == [("GOODHEALTH", "ADT-A01")]

    for deployed in engine.channels.values():
        await deployed._flush_statistics()
    stats = dict(
        (r[0], r[1:])
        for r in query(engine, f"SELECT METADATA_ID, RECEIVED, SENT, ERROR FROM D_MS{n}")
    )
    assert stats == {None: (1, 1, 0), 0: (1, 0, 0), 1: (1, 1, 0)}


async def test_bad_messages_get_ae_with_the_error_stored_and_the_listener_keeps_serving(
    nursery, tmp_path, hl7_sample
) -> None:
    engine, port = await start(nursery, write_config(tmp_path, example_channel()))
    bad = hl7_sample("bad_no_msh.hl7")
    truncated = hl7_sample("bad_truncated_msh.hl7")
    good = hl7_sample("oru_r01.hl7")
    acks = await send_mllp("127.0.0.1", port, [bad, truncated, good], timeout=10)
    codes = [segments(a)["MSA"][1] for a in acks]
    assert codes == ["AE", "AE", "AA"]
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    errors = query(
        engine,
        f"SELECT MM.MESSAGE_ID, MM.STATUS, MM.ERROR_CODE, MC.CONTENT FROM "
        f"D_MM{n} MM JOIN D_MC{n} MC ON MC.MESSAGE_ID = MM.MESSAGE_ID AND "
        f"MC.METADATA_ID = 0 AND MC.CONTENT_TYPE = 12 ORDER BY 1",
    )
    assert [(status, code) for _, status, code, _ in errors] == [("E", 1), ("E", 1)]
    assert "MSH" in errors[0][3], "the stored error says what was wrong"
    assert len(list((tmp_path / "out").iterdir())) == 1, "only the good message is written"


async def test_a_failed_write_answers_ae(nursery, tmp_path, hl7_sample) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the output directory should be")
    engine, port = await start(
        nursery, write_config(tmp_path, example_channel(directory="not-a-directory"))
    )
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AE"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT ID, STATUS FROM D_MM{n} ORDER BY ID") == [(0, "T"), (1, "E")]
    (error,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 12"
    )[0]
    assert "File Writer: cannot write" in error


@pytest.mark.slow
def test_pannier_run_and_pannier_send_from_the_command_line(tmp_path, hl7_sample) -> None:
    """What the README tells a user to do: start the engine, send a file, stop with SIGTERM."""
    config = write_config(tmp_path, example_channel())
    bin_dir = Path(sys.executable).parent
    engine = subprocess.Popen(
        [str(bin_dir / "pannier"), "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        port = None
        deadline = time.monotonic() + 30
        lines = []
        while port is None and time.monotonic() < deadline:
            line = engine.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on [\d.]+:(\d+)", line)
            if match:
                port = int(match.group(1))
        assert port, "the engine never said where it listens:\n" + "".join(lines)
        sample = tmp_path / "adt.hl7"
        sample.write_bytes(hl7_sample("adt_a01.hl7"))
        sent = subprocess.run(
            [str(bin_dir / "pannier"), "send", "--mllp", f"127.0.0.1:{port}", str(sample)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        assert "MSA|AA|MSG00001" in sent.stdout
        assert len(list((tmp_path / "out").iterdir())) == 1
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            code = engine.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.kill()
            raise
    assert code == 0
    rest = engine.stderr.read()
    assert "engine" in rest and "stopped" in rest


async def test_the_deployed_channel_is_stored_as_mirth_xml_in_the_channel_table(
    nursery, tmp_path
) -> None:
    from pannier.model.mirth_xml import channel_from_xml

    engine, _port = await start(nursery, write_config(tmp_path, example_channel()))
    ((channel_id, name, revision, xml),) = query(
        engine, "SELECT ID, NAME, REVISION, CHANNEL FROM CHANNEL"
    )
    assert (channel_id, name, revision) == (
        "5f2b4f7e-8c43-4d0e-9a39-7d8e2b7c6a01",
        "ADT to file",
        1,
    )
    assert xml.startswith('<channel version="4.5.2">') and "<exportData>" not in xml
    stored = channel_from_xml(xml)
    assert stored.source.transportName == "TCP Listener"
    assert [d.name for d in stored.destinations] == ["Write file"]
