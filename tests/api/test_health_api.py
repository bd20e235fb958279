"""Health probes: no login, and readiness turning 503 when the engine drains."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import trio

from tests.api.conftest import CHANNEL_A, Api, StartApi, channel_toml


async def test_probes_need_no_login_and_report_up(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        ready = await client.get("/api/health")
        live = await client.get("/api/health/live")
        startup = await client.get("/api/health/startup")
        channel = await client.get(f"/api/health/channels/{CHANNEL_A}")
        unknown = await client.get("/api/health/channels/nope")
    assert (ready.status_code, ready.json()["status"]) == (200, "UP")
    assert live.status_code == 200
    assert startup.status_code == 200
    assert (channel.status_code, channel.json()["state"]) == (200, "STARTED")
    assert unknown.status_code == 404


async def test_ready_is_503_with_reasons_when_a_channel_failed_to_deploy(
    start_api: StartApi,
) -> None:
    broken = channel_toml("cccccccc-0000-4000-8000-000000000003", "Broken").replace(
        'transportName = "Channel Writer"', 'transportName = "No Such Connector"'
    )
    api = await start_api([broken])
    async with httpx.AsyncClient(base_url=api.url) as client:
        ready = await client.get("/api/health")
        channel = await client.get("/api/health/channels/cccccccc-0000-4000-8000-000000000003")
    assert ready.status_code == 503
    assert any("failed to deploy" in reason for reason in ready.json()["reasons"])
    assert channel.status_code == 503


async def test_stopped_channel_is_503_on_its_probe(api: Api) -> None:
    async with api.client() as client:
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_stop")).status_code == 200
        probe = await client.get(f"/api/health/channels/{CHANNEL_A}")
    assert probe.status_code == 503
    assert probe.json()["state"] == "STOPPED"


async def test_ready_turns_503_when_the_engine_starts_draining(start_api: StartApi) -> None:
    """SIGTERM calls request_stop: readiness answers 503 while in-flight messages drain, and
    liveness stays 200 until the API stops with the engine."""
    async with trio.open_nursery() as engine_nursery:
        api = await start_api([channel_toml(CHANNEL_A, "A")], within=engine_nursery)
        engine = api.engine
        deployed = engine.channels[CHANNEL_A]
        async with httpx.AsyncClient(base_url=api.url) as client:
            assert (await client.get("/api/health")).status_code == 200
            # One message in flight holds the drain open while we look.
            release, entered = trio.Event(), trio.Event()
            original = deployed.process_received

            async def slow(*args: object, **kwargs: object) -> object:
                entered.set()
                await release.wait()
                return await original(*args, **kwargs)  # type: ignore[arg-type]

            deployed.process_received = slow  # type: ignore[method-assign]
            from pannier.connectors import RawMessage

            engine_nursery.start_soon(engine.route, CHANNEL_A, RawMessage("hello"))
            await entered.wait()
            engine.request_stop()
            draining = await client.get("/api/health")
            live = await client.get("/api/health/live")
            status = await client.get(
                "/api/server/status",
                auth=("admin", "admin"),
                headers={"X-Requested-With": "t"},
            )
            assert draining.status_code == 503
            assert "draining" in draining.json()["reasons"][0]
            assert live.status_code == 200
            assert status.json() == 1
            release.set()
        await engine.stopped.wait()


async def test_a_busy_api_port_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    from pannier.config import ConfigError, load_config
    from pannier.engine import Engine

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "pannier.toml").write_text(
            f'[server]\ndata_dir = "var"\n[channels]\npaths = []\n[api]\nport = {port}\n',
            encoding="utf-8",
        )
        engine = Engine(load_config(tmp_path / "pannier.toml", environ={}), serve_api=True)
        errors: list[BaseException] = []
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
        except BaseException as exc:  # grouped by the nurseries: walk it below
            pending = [exc]
            while pending:
                item = pending.pop()
                if isinstance(item, BaseExceptionGroup):
                    pending.extend(item.exceptions)
                else:
                    errors.append(item)
    assert [type(e) for e in errors] == [ConfigError]
    assert f"api.host / api.port = 127.0.0.1:{port}" in str(errors[0])
    assert engine.stopped.is_set()
