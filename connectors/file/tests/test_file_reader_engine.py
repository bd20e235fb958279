"""File Reader -> File Writer through a real in-process Engine on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from pannier.config import load_config
from pannier.engine import Engine

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hl7"

CHANNEL = """\
id = "7d0c1d9e-3a1b-4b8e-9a55-0f1e2d3c4b5a"
name = "Files in, files out"

[properties]
messageStorageMode = "DEVELOPMENT"

[source]
transportName = "File Reader"
inboundDataType = "{datatype}"

[source.properties]
directory = "in"
fileFilter = "*.hl7"
pollingFrequency = 50
fileAge = 0
sortBy = "name"
{after}

[[destinations]]
metaDataId = 1
name = "Write file"
transportName = "File Writer"

[destinations.properties]
directory = "out"
outputPattern = "${{originalFilename}}.out"
outputAppend = false
"""


def write_config(tmp_path: Path, datatype: str, after: str) -> Path:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "files.toml").write_text(
        CHANNEL.format(datatype=datatype, after=after), encoding="utf-8"
    )
    config = tmp_path / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n', encoding="utf-8"
    )
    return config


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


async def test_hl7_files_are_read_written_moved_and_stored(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    messages = {name: (FIXTURES / name).read_bytes() for name in ("adt_a01.hl7", "oru_r01.hl7")}
    for name, data in messages.items():
        (inbox / name).write_bytes(data)
    (inbox / "notes.txt").write_text("not matched", encoding="utf-8")
    config = write_config(
        tmp_path, "HL7V2", 'afterProcessingAction = "Move"\nmoveToDirectory = "done"'
    )
    engine = Engine(load_config(config, environ={}))
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors

    out = tmp_path / "out"
    await wait_for(lambda: out.exists() and len(list(out.iterdir())) == 2)
    await wait_for(lambda: sorted(p.name for p in inbox.iterdir()) == ["notes.txt"])
    for name, data in messages.items():
        assert (out / f"{name}.out").read_bytes() == data
        assert (tmp_path / "done" / name).read_bytes() == data

    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    rows = query(engine, f"SELECT ID, STATUS FROM D_MM{n} ORDER BY MESSAGE_ID, ID")
    assert rows == [(0, "T"), (1, "S"), (0, "T"), (1, "S")]


async def test_raw_file_is_deleted_after_processing(nursery: trio.Nursery, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "note.hl7").write_text("just some text", encoding="utf-8")
    config = write_config(tmp_path, "RAW", 'afterProcessingAction = "Delete"')
    engine = Engine(load_config(config, environ={}))
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors

    out = tmp_path / "out" / "note.hl7.out"
    await wait_for(out.exists)
    await wait_for(lambda: list(inbox.iterdir()) == [])
    assert out.read_text(encoding="utf-8") == "just some text"
