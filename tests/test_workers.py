"""``pannier run --workers N``: several engine processes on one node sharing the MLLP port and
the database, each with its own server id; worker 0 alone serves the API and polls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pannier.supervisor
import pytest
import sqlalchemy as sa
import trio
from pannier.config import load_config
from pannier.engine import Engine
from pannier.testing.engine import engine_config
from pannier.workers import Worker, current_worker, worker_server_id

from tests.api.conftest import ADMIN, CHANNEL_A, HEADERS, channel_toml
from tests.reliability.helpers import Counts, load, scaled, stored_control_ids
from tests.reliability.servers import free_port
from tests.test_end_to_end import example_channel, write_config

BIN = Path(sys.executable).parent


class Node:
    """``pannier run --workers N`` in a subprocess; its log is collected as it is written."""

    def __init__(self, config: Path, url: str, workers: int) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "pannier"), "run", "--config", str(config), "--workers", str(workers)],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PANNIER_DATABASE_URL=url),
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for line in self.lines if re.search(pattern, line)) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the node's log:\n{''.join(self.lines)[-3000:]}")

    def workers(self) -> list[int]:
        """The worker processes' pids, in start order."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def messages_per_server(url: str) -> dict[str, tuple[int, int]]:
    """server id → (messages, of which processed) in D_M1."""
    database = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with database.connect() as db:
            rows = db.execute(
                sa.text(
                    "SELECT SERVER_ID, COUNT(*), SUM(CASE WHEN PROCESSED = :t THEN 1 ELSE 0 END) "
                    "FROM D_M1 GROUP BY SERVER_ID"
                ),
                {"t": True},
            ).all()
    finally:
        database.dispose()
    return {str(server): (int(count), int(done)) for server, count, done in rows}


def two_worker_node(tmp_path: Path, url: str) -> tuple[Node, int]:
    """The example MLLP channel on a free port, run by a node of two workers; returns once
    both are serving."""
    port = free_port()
    node = Node(write_config(tmp_path, example_channel(port)), url, workers=2)
    try:
        node.wait_for(r"2 workers running")
    except BaseException:
        node.process.kill()
        raise
    return node, port


@pytest.mark.slow
def test_two_workers_share_the_port_and_store_each_message_once(
    tmp_path: Path, hl7_sample, db_url: str
) -> None:
    node, port = two_worker_node(tmp_path, db_url)
    acked: list[str] = []
    sent: list[str] = []
    try:
        node.wait_for(r"\[worker 1\] .*listening on 127\.0\.0\.1:" + str(port))
        # pannier run's own pid became the supervisor (what systemd and the like watch)
        command = Path(f"/proc/{node.process.pid}/cmdline").read_bytes().split(b"\0")
        assert command[1:3] == [b"-P", str(Path(pannier.supervisor.__file__)).encode()]
        template = hl7_sample("adt_a01.hl7")
        trio.run(lambda: load(port, template, acked, 3.0, sent=sent, connections=8))
    finally:
        status = node.stop()
    assert status == 0, "".join(node.lines)[-2000:]

    counts = Counts.of(len(sent), acked, stored_control_ids(db_url, r"\|(CRASH\d+)\|"))
    counts.show("two workers")
    assert counts.acknowledged > 50 and counts.lost == 0 and counts.duplicated == 0
    per_server = messages_per_server(db_url)
    node_id = (tmp_path / "var" / "server.id").read_text().split("=", 1)[1].strip()
    assert len(per_server) == 2 and node_id in per_server, per_server
    assert worker_server_id(node_id, Worker(1, 2)) in per_server
    # 8 connections spread over both workers (all on one: 1 chance in 128)
    assert all(count > 0 and done == count for count, done in per_server.values()), per_server
    written = {p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert {template.replace(b"MSG00001", c.encode()) for c in acked} <= written


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_recovers_what_it_accepted(
    tmp_path: Path, hl7_sample
) -> None:
    url = f"sqlite:///{tmp_path / 'pannier.db'}"
    node, port = two_worker_node(tmp_path, url)
    acked: list[str] = []
    sent: list[str] = []
    try:
        first, second = node.workers()
        template = hl7_sample("adt_a01.hl7")

        async def kill_under_load() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: load(
                        port,
                        template,
                        acked,
                        scaled(6.0, 40.0),
                        sent=sent,
                        connections=8,
                        until_broken=False,
                    )
                )
                await trio.sleep(scaled(1.5, 10.0))
                os.kill(second, signal.SIGKILL)

        trio.run(kill_under_load)
        node.wait_for(r"worker 1 \(pid \d+\) exited with status -9")
        node.wait_for(r"\[worker 1\] .*engine .* started", count=2)
        assert node.workers()[0] == first and second not in node.workers()
        time.sleep(1.0)
    finally:
        status = node.stop()
    assert status == 0, "".join(node.lines)[-2000:]

    counts = Counts.of(len(sent), acked, stored_control_ids(url, r"\|(CRASH\d+)\|"))
    counts.show("worker SIGKILL under load")
    assert counts.lost == 0 and counts.duplicated == 0
    per_server = messages_per_server(url)
    assert len(per_server) == 2
    # the restarted worker (same server id) recovered everything it had accepted
    assert all(done == count for count, done in per_server.values()), per_server


def test_a_node_whose_first_worker_cannot_start_exits_with_the_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, example_channel(free_port()))
    with config.open("a") as file:
        file.write("[scripts]\ndeploy = \"raise RuntimeError('no lab system today')\"\n")
    result = subprocess.run(
        [str(BIN / "pannier"), "run", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "worker 0 exited" in result.stderr and "no lab system today" in result.stderr


def test_workers_setting_is_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path, example_channel(free_port()))
    result = subprocess.run(
        [str(BIN / "pannier"), "run", "--config", str(config), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "server.workers = 0" in result.stderr and "at least 1" in result.stderr


def test_worker_identity_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANNIER_WORKER", raising=False)
    assert current_worker() == Worker(0, 1)
    monkeypatch.setenv("PANNIER_WORKER", "1/3")
    assert current_worker() == Worker(1, 3) and current_worker().shares_ports
    monkeypatch.setenv("PANNIER_WORKER", "3/3")
    with pytest.raises(ValueError, match="expected <index>/<count>"):
        current_worker()
    base = "0c4f3d8e-5d7e-4a6e-9a3b-2f1e0d9c8b7a"
    assert worker_server_id(base, Worker(0, 3)) == base
    ids = {worker_server_id(base, Worker(i, 3)) for i in range(3)}
    assert len(ids) == 3 and all(len(i) == 36 for i in ids)  # Mirth's SERVER_ID is 36 wide


async def test_with_workers_the_api_refuses_channel_changes_but_reads(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = engine_config(
        tmp_path,
        [channel_toml(CHANNEL_A, "Channel A")],
        "[api]\nport = 0\n",
    )
    engine = Engine(settings, serve_api=True, worker=Worker(0, 2))
    await nursery.start(engine.run)
    async with httpx.AsyncClient(base_url=engine.api_address, auth=ADMIN, headers=HEADERS) as web:
        stop = await web.post(f"/api/channels/{CHANNEL_A}/_stop")
        assert stop.status_code == 409
        assert "server.workers = 2" in stop.json()["error"]
        assert "restart" in stop.json()["error"]
        status = await web.get(f"/api/channels/{CHANNEL_A}/statistics")
        assert status.status_code == 200
        assert (await web.post("/api/channels/_clearStatistics")).status_code == 204
        config_map = await web.put("/api/server/configurationMap", json={"a": "1"})
        assert config_map.status_code == 409  # the memory map backend is per process
    assert engine.channel_state(CHANNEL_A) == "STARTED"
    engine.request_stop()


FILE_READER = """
id = "{id}"
name = "{name}"
[source]
transportName = "File Reader"
inboundDataType = "RAW"
[source.properties]
directory = "{inbox}"
fileFilter = "*.txt"
pollingFrequency = 100
pollOnStart = true
checkFileAge = false
afterProcessingAction = "DELETE"
[[destinations]]
metaDataId = 1
name = "Out"
transportName = "File Writer"
inboundDataType = "RAW"
outboundDataType = "RAW"
[destinations.properties]
directory = "{out}"
"""


async def test_only_worker_0_polls(nursery: trio.Nursery, tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "one.txt").write_text("hello")
    channel = FILE_READER.format(
        id=CHANNEL_A, name="reader", inbox=inbox.as_posix(), out=out.as_posix()
    )
    settings = engine_config(tmp_path, [channel])
    second = Engine(settings, worker=Worker(1, 2))
    await nursery.start(second.run)
    await trio.sleep(0.5)  # five polling intervals
    assert (inbox / "one.txt").exists() and not out.exists(), "worker 1 must not poll"
    first = Engine(load_config(settings.path), worker=Worker(0, 2))
    await nursery.start(first.run)
    with trio.fail_after(10):
        while not out.exists() or not list(out.iterdir()):
            await trio.sleep(0.05)
    assert [p.read_text() for p in out.iterdir()] == ["hello"]
    assert not (inbox / "one.txt").exists()
    first.request_stop()
    second.request_stop()


def _affinity_after(setting: str, worker: str) -> str:
    """Pin a fresh Python process as ``pannier run`` would; what it reports."""
    code = (
        "import os; from pannier.workers import pin_to_cpu, Worker; "
        f"i, n = {worker!r}.split('/'); "
        f"cpu = pin_to_cpu({setting!r}, Worker(int(i), int(n))); "
        "print(cpu, sorted(os.sched_getaffinity(0)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_cpu_affinity_pins_each_worker_to_its_own_cpu() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    assert _affinity_after("", "0/1") == f"None {cpus}"  # the default leaves the OS to it
    assert _affinity_after("auto", "0/2") == f"{cpus[0]} [{cpus[0]}]"
    last = cpus[1 % len(cpus)]
    assert _affinity_after("auto", "1/2") == f"{last} [{last}]"
    assert _affinity_after(f"{cpus[-1]}", "0/1") == f"{cpus[-1]} [{cpus[-1]}]"
    refused = _affinity_after("4095", "0/1")
    assert "server.cpu_affinity = '4095': cannot run on CPU 4095" in refused
    assert "expected CPUs this process may use" in refused


def test_cpu_affinity_setting_is_checked() -> None:
    with pytest.raises(Exception, match=r"server.cpu_affinity = 'fast'.*CPU numbers"):
        load_config(None, {"PANNIER_SERVER_CPU_AFFINITY": "fast"})
    assert load_config(None, {"PANNIER_SERVER_CPU_AFFINITY": "0,1"})["server.cpu_affinity"]
