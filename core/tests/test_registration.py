"""Backends, services, routes, commands and plugin settings contributed through the hooks and
selected by name in the configuration, as a third-party plugin would do it."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from pannier import (
    CliCommand,
    ClusterBusSpec,
    MapBackendSpec,
    Route,
    SequenceAllocator,
    SequenceAllocatorSpec,
    hookimpl,
)
from pannier.bus import LocalBus
from pannier.config import ConfigError, load_config
from pannier.engine import Engine
from pannier.maps import MemoryMapBackend
from pannier.plugins import PluginError, build_registry, new_plugin_manager
from pannier.testing import check_cluster_bus, check_map_backend, check_sequence_allocator

from .conftest import rows
from .testkit import KitPlugin, channel_toml


class CountingAllocator(SequenceAllocator):
    def __init__(self) -> None:
        self.calls = 0

    def next_ids(self, source: Any, count: int) -> list[int]:
        self.calls += 1
        return source.reserve(count)


class RecordingBus(LocalBus):
    def __init__(self) -> None:
        super().__init__()
        self.running = False

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        try:
            await super().run(task_status=task_status)
        finally:
            self.running = False


class Backends:
    def __init__(self) -> None:
        self.allocator = CountingAllocator()
        self.bus = RecordingBus()
        self.order: list[str] = []

    @hookimpl
    def pannier_register_map_backends(self) -> list[MapBackendSpec]:
        return [MapBackendSpec("shelf", lambda settings: ShelfBackend(settings))]

    @hookimpl
    def pannier_register_sequence_allocators(self) -> list[SequenceAllocatorSpec]:
        return [SequenceAllocatorSpec("counting", lambda settings: self.allocator)]

    @hookimpl
    def pannier_register_cluster_buses(self) -> list[ClusterBusSpec]:
        return [ClusterBusSpec("recording", lambda settings: self.bus)]

    @hookimpl
    def pannier_config_defaults(self) -> dict[str, dict[str, Any]]:
        return {"shelf": {"label": "default", "size": 10}}

    @hookimpl
    def pannier_register_services(self, engine: Engine) -> list[Any]:
        return [OrderService(self.order)]

    @hookimpl
    def pannier_channel_deployed(self, engine: Engine, channel: Any) -> None:
        self.order.append("channel deployed")


class ShelfBackend(MemoryMapBackend):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__()
        self.settings = settings


class OrderService:
    name = "order"

    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def run(self, engine: Engine, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.order.append("service started")
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.order.append("service stopped")


async def test_backends_are_selected_by_name_and_used(start_engine) -> None:
    backends, kit = Backends(), KitPlugin()
    engine = await start_engine(
        [channel_toml()],
        plugins=[backends, kit],
        config='[cluster]\nmap_backend = "shelf"\nbus = "recording"\n'
        '[database]\nsequence_allocator = "counting"\n'
        "[plugins.shelf]\nsize = 3\n",
    )
    assert isinstance(engine.map_backend, ShelfBackend)
    assert engine.map_backend.settings == {"label": "default", "size": 3}
    assert backends.bus.running
    await kit.sources[0].dispatcher.dispatch(__import__("pannier").RawMessage("ORU|1"))
    assert backends.allocator.calls == 1
    n = rows(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert rows(engine, f"SELECT ID FROM D_MSQ{n}") == [(2,)], "single id reserved"
    assert backends.order[:2] == ["service started", "channel deployed"]
    engine.request_stop()
    with trio.fail_after(10):
        while "service stopped" not in backends.order:
            await trio.sleep(0.01)


def test_plugin_settings_are_checked_against_declared_defaults(tmp_path) -> None:
    path = tmp_path / "pannier.toml"
    path.write_text('[channels]\npaths = []\n[plugins.shelf]\nsize = "big"\n')
    with pytest.raises(ConfigError, match=r"plugins.shelf.size = 'big'.*whole number"):
        Engine(load_config(path, environ={}), extra_plugins=[Backends()])


def test_unknown_allocator_name_lists_installed(tmp_path) -> None:
    path = tmp_path / "pannier.toml"
    path.write_text('[channels]\npaths = []\n[database]\nsequence_allocator = "magic"\n')
    with pytest.raises(
        ConfigError,
        match=r"database.sequence_allocator = 'magic'.*block, "
        r"counting, single",
    ):
        Engine(load_config(path, environ={}), extra_plugins=[Backends()])


class RoutePlugin:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    @hookimpl
    def pannier_register_routes(self, engine: Engine) -> list[Route]:
        return self.routes


async def _handler() -> dict[str, str]:
    return {}


def test_routes_are_collected_and_checked(tmp_path) -> None:
    path = tmp_path / "pannier.toml"
    path.write_text("[channels]\npaths = []\n")
    ok = RoutePlugin([Route("GET", "/system/ping", _handler)])
    engine = Engine(load_config(path, environ={}), extra_plugins=[ok])
    assert [r.path for r in engine.routes] == ["/system/ping"]
    bad = RoutePlugin([Route("GET", "/channels/mine", _handler)])
    with pytest.raises(PluginError, match="must start with /extensions/"):
        Engine(load_config(path, environ={}), extra_plugins=[bad])
    twice = RoutePlugin(
        [Route("GET", "/system/ping", _handler), Route("get", "/system/ping", _handler)]
    )
    with pytest.raises(PluginError, match="registered by both"):
        Engine(load_config(path, environ={}), extra_plugins=[twice])


class CommandPlugin:
    @hookimpl
    def pannier_register_commands(self) -> list[CliCommand]:
        return [
            CliCommand("run", "a clash", lambda p: None, lambda a: 0),
            CliCommand("greet", "hello", lambda p: None, lambda a: 0),
        ]


def test_a_command_clashing_with_an_existing_one_is_skipped() -> None:
    pm = new_plugin_manager()
    from pannier import builtin

    pm.register(builtin, name="core")
    pm.register(CommandPlugin(), name="clash")
    registry = build_registry(pm)
    assert registry.commands["run"][1] == "core"
    assert registry.commands["greet"][1] == "clash"


async def test_builtin_backends_pass_their_conformance_kits() -> None:
    await check_map_backend(MemoryMapBackend())
    await check_cluster_bus(lambda: LocalBus(), shared=False)
    from pannier.sequences import BlockAllocator, SingleAllocator

    check_sequence_allocator(lambda: BlockAllocator(5))
    check_sequence_allocator(SingleAllocator)


class ShoutEngine:
    """A toy script language: a script is accepted when it is written in capitals."""

    @hookimpl
    def pannier_register_script_engines(self) -> list[Any]:
        from pannier.scripting import ScriptEngineSpec

        def compile_shout(code: str, names: Any, where: str, verdict: bool) -> Any:
            if not code.strip():
                from pannier.scripting import ScriptError

                raise ScriptError(f"{where}: nothing to shout")
            return lambda **scope: code.isupper()

        return [ScriptEngineSpec("shout", compile_shout)]


async def test_a_plugin_script_language_runs_filters_and_scripts(start_engine) -> None:
    from pannier import RawMessage

    kit = KitPlugin()
    rule = '\n[[destinations.filter.rules]]\nkind = "shout"\ncode = "{code}"\n'
    loud, quiet = "00000000-0000-0000-0000-0000000000aa", "00000000-0000-0000-0000-0000000000bb"
    engine = await start_engine(
        [
            channel_toml(channel_id=loud) + rule.format(code="LET IT THROUGH"),
            channel_toml(channel_id=quiet) + rule.format(code="let it through"),
        ],
        plugins=[kit, ShoutEngine()],
    )
    assert set(engine.script_engines) == {"python", "shout"}
    statuses = {}
    for source in kit.sources:
        result = await source.dispatcher.dispatch(RawMessage("ORU|1"))
        n = rows(
            engine,
            f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = "
            f"'{source.setup.channel_id}'",
        )[0][0]
        statuses[source.setup.channel_id] = rows(
            engine, f"SELECT STATUS FROM D_MM{n} WHERE MESSAGE_ID = {result.message_id} AND ID = 2"
        )[0][0]
    assert statuses == {loud: "S", quiet: "F"}, "the shout engine decided each filter"


def test_a_script_in_a_language_with_no_engine_names_the_installed_ones(tmp_path) -> None:
    from pannier.engine import DeployError
    from pannier.model.channel_file import channel_from_dict

    path = tmp_path / "pannier.toml"
    path.write_text("[channels]\npaths = []\n")
    engine = Engine(load_config(path, environ={}), extra_plugins=[ShoutEngine()])
    channel = channel_from_dict(
        {
            "name": "c",
            "source": {"transportName": "TCP Listener"},
            "postprocessingScript": {"code": "return;", "language": "javascript"},
            "destinations": [{"name": "d", "transportName": "File Writer"}],
        }
    )
    with pytest.raises(
        DeployError,
        match=r"javascript scripts need a script engine plugin.*"
        r"installed: python, shout",
    ):
        engine.prepare(channel)


class BrokenObserver:
    @hookimpl
    def pannier_connector_state_changed(
        self, channel_id: str, metadata_id: int, state: str, details: Any
    ) -> None:
        raise RuntimeError("observer bug")


async def test_a_failing_state_observer_never_reaches_the_connector(start_engine) -> None:
    from pannier import RawMessage

    kit = KitPlugin()
    await start_engine([channel_toml()], plugins=[BrokenObserver(), kit])
    kit.sources[0].setup.report_state("receiving", {"connections": 1})  # must not raise
    result = await kit.sources[0].dispatcher.dispatch(RawMessage("ORU|1"))
    assert result.response is not None and result.response.message == "ACK:S"
    assert ("state", (0, "receiving", {"connections": 1})) in kit.events, (
        "the other observers still hear about it"
    )
