"""docs/writing-connectors.md is real: its plugin module and tests are extracted from the page,
the plugin is registered on an engine that runs the page's channel, the page's tests (the
conformance kit on its three connectors) pass, and its pyproject and exported XML are what
Pannier uses and writes."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from lxml import etree
from pannier.config import load_config
from pannier.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-connectors.md"
PLUGIN_MARK = "# pannier_lines/plugin.py"
TESTS_MARK = "# tests/test_lines.py"
CHANNEL_MARK = "# channels/lines.toml"
PYPROJECT_MARK = "# pyproject.toml"


def blocks() -> list[tuple[str, str]]:
    """Every fenced code block of the guide: (language, text)."""
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def marked(mark: str) -> list[str]:
    return [body for _lang, body in blocks() if body.startswith(mark)]


def test_every_code_block_of_the_guide_is_checked_here() -> None:
    marks = (PLUGIN_MARK, TESTS_MARK, CHANNEL_MARK, PYPROJECT_MARK, "<properties ")
    unchecked = [
        body.splitlines()[0]
        for lang, body in blocks()
        if lang and not body.startswith(marks)  # the unlabelled block is a directory tree
    ]
    assert unchecked == []
    assert len(marked(PLUGIN_MARK)) == 5 and len(marked(TESTS_MARK)) == 1


@pytest.fixture
def guide_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The guide's plugin module, written out as the package ``pannier_lines`` and imported."""
    package = tmp_path / "src" / "pannier_lines"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "plugin.py").write_text("\n\n".join(marked(PLUGIN_MARK)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield importlib.import_module("pannier_lines.plugin")
    for name in [n for n in sys.modules if n == "pannier_lines" or n.startswith("pannier_lines.")]:
        del sys.modules[name]


async def test_the_guides_tests_pass(guide_plugin: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "test_lines.py"
    path.write_text(marked(TESTS_MARK)[0], encoding="utf-8")
    spec = importlib.util.spec_from_file_location("guide_test_lines", path)
    assert spec is not None and spec.loader is not None
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    functions = {n: f for n, f in vars(tests).items() if n.startswith("test_")}
    assert set(functions) == {
        "test_line_listener_conforms",
        "test_line_sender_conforms",
        "test_heartbeat_reader_conforms",
        "test_heartbeat_reader_polls_only_when_the_kernel_says_so",
    }
    for function in functions.values():
        assert inspect.iscoroutinefunction(function)
        await function()


def _query(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    assert engine.store is not None
    with engine.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def _canonical(xml: str) -> str:
    parser = etree.XMLParser(remove_blank_text=True)
    return str(etree.tostring(etree.fromstring(xml.encode("utf-8"), parser), encoding="unicode"))


async def test_the_guides_channel_runs_on_an_engine_with_the_plugin(
    guide_plugin: ModuleType, tmp_path: Path, nursery: trio.Nursery
) -> None:
    received: list[bytes] = []
    arrived = trio.Event()

    async def collect(stream: trio.SocketStream) -> None:
        async for data in stream:
            received.append(data)
            arrived.set()

    [server] = await nursery.start(partial(trio.serve_tcp, collect, 0, host="127.0.0.1"))
    port = server.socket.getsockname()[1]
    channel = marked(CHANNEL_MARK)[0]
    assert "port = 7000" in channel and "port = 7001" in channel
    channel = channel.replace("port = 7000", "port = 0").replace("port = 7001", f"port = {port}")
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "lines.toml").write_text(channel, encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n', encoding="utf-8"
    )
    engine = Engine(load_config(config, environ={}), extra_plugins=[guide_plugin])
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors
    (deployed,) = engine.channels.values()
    listener = await trio.open_tcp_stream("127.0.0.1", deployed.bound[1])
    async with listener:
        await listener.send_all(b"MSH|^~\\&|GUIDE|1\n")
        with trio.fail_after(10):
            await arrived.wait()
    assert b"".join(received) == b"MSH|^~\\&|GUIDE|1\n"

    n = _query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    with trio.fail_after(10):  # the row is final once the destination's result is stored
        while _query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1") != [("S",)]:
            await trio.sleep(0.01)
    assert _query(engine, f"SELECT ID, CONNECTOR_NAME FROM D_MM{n} ORDER BY ID") == [
        (0, "Source"),
        (1, "Forward"),
    ]

    # the CHANNEL row holds the Line Sender as the guide shows it
    (row,) = _query(engine, "SELECT CHANNEL FROM CHANNEL")
    exported = etree.fromstring(row[0].encode("utf-8"))
    written = exported.find("destinationConnectors/connector/properties")
    [shown] = [body for lang, body in blocks() if lang == "xml"]
    shown = shown.replace("<port>7001</port>", f"<port>{port}</port>")
    assert _canonical(etree.tostring(written, encoding="unicode")) == _canonical(shown)


def test_the_guides_pyproject_declares_the_entry_point() -> None:
    project = tomllib.loads(marked(PYPROJECT_MARK)[0])
    assert project["project"]["entry-points"]["pannier.plugins"] == {
        "lines": "pannier_lines.plugin"
    }
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/pannier_lines"
    ]
