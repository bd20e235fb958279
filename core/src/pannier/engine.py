"""The engine: one trio nursery owning the store, the bus, services and deployed channels.

Start-up order: plugins load and are checked; configuration is validated against what they
declare; the store opens (schema created in standalone mode); the bus and services start;
channels deploy. Shutdown (``request_stop``, SIGTERM/SIGINT in ``pannier run``) runs it
backwards: sources stop taking messages, in-flight messages drain under
``engine.drain_seconds``, channels stop, services and the bus stop, the store closes.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from pannier.bus import ClusterBus
from pannier.config import Config, ConfigError
from pannier.connectors import (
    ChannelNotDeployedError,
    ConnectorSetup,
    ConnectorType,
    DestinationConnector,
    DispatchResult,
    RawMessage,
    SourceConnector,
)
from pannier.extensions import Route
from pannier.maps import MapBackend
from pannier.model.channel import AUTO_BEFORE, Channel, Connector
from pannier.model.channel_file import load_channel_file
from pannier.model.mirth_xml import MirthXmlError, channel_to_xml
from pannier.model.status import Status
from pannier.plugins import (
    PluginError,
    PluginInfo,
    build_registry,
    call_each,
    load_plugins,
    new_plugin_manager,
    notify,
)
from pannier.properties import PropertyError
from pannier.runtime.channel import (
    LIFECYCLE_NAMES,
    POSTPROCESSOR_NAMES,
    PREPROCESSOR_NAMES,
    DeployedChannel,
    DestinationRuntime,
    MessageContext,
    SourceScripts,
    script_log,
)
from pannier.runtime.global_scripts import (
    chain_postprocessors,
    chain_preprocessors,
    load_global_scripts,
)
from pannier.runtime.scripts import (
    compile_filter,
    compile_script,
    compile_transformer,
)
from pannier.scripting import ScriptEngineSpec, ScriptError
from pannier.store.store import Store, new_server_id
from pannier.workers import Worker, current_worker, worker_server_id

log = logging.getLogger("pannier.engine")
T = TypeVar("T")


class DeployError(Exception):
    """A channel cannot be deployed; the text names the channel and the reason."""


def check_properties(
    where: str, defaults: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Overlay ``given`` on ``defaults``; unknown keys and wrong types are errors."""
    merged = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise DeployError(
                f"{where}: unknown property {key!r}; expected one of: "
                f"{', '.join(sorted(defaults)) or 'none'}"
            )
        default = defaults[key]
        value = _coerce_property(value, default)
        if (
            default is not None
            and not isinstance(value, type(default))
            and not (isinstance(default, float) and isinstance(value, int))
        ):
            raise DeployError(
                f"{where}.{key} = {value!r}: expected a value like "
                f"{default!r} ({type(default).__name__})"
            )
        merged[key] = value
    return merged


def _coerce_property(value: Any, default: Any) -> Any:
    """Mirth stores every property as text ("6661", "true"): accept those for numbers and
    booleans so imported channels deploy."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    text = value.strip()
    if isinstance(default, bool):
        return {"true": True, "false": False}.get(text.lower(), value)
    if isinstance(default, int):
        return int(text) if text.lstrip("-").isdigit() else value
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _build(kind: ConnectorType, setup: ConnectorSetup, where: str) -> Any:
    """Build a connector; its refusal of a property (a missing TLS file, a bad URL) is a deploy
    error naming the connector, not a crash."""
    try:
        return kind.factory(setup)
    except PropertyError as exc:
        raise DeployError(f"{where}: {exc}") from None


def _polls_elsewhere() -> bool:
    """Workers other than 0 never poll: worker 0 does, for the node."""
    return False


def read_server_id(config: Config) -> str:
    """The configured server id, else the one kept in ``<data_dir>/server.id`` (Mirth's
    ``server.id=<uuid>`` format), generated and written on first start."""
    configured = config["server.id"]
    if configured:
        return str(configured)
    path = config.data_dir / "server.id"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "server.id" and value.strip():
                return value.strip()
    server_id = new_server_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"server.id={server_id}\n", encoding="utf-8")
    return server_id


class Engine:
    """One Pannier engine. Build it, then ``await nursery.start(engine.run)``."""

    def __init__(
        self,
        config: Config,
        *,
        extra_plugins: Sequence[object] = (),
        serve_api: bool = False,
        worker: Worker | None = None,
    ) -> None:
        """``extra_plugins`` are plugin objects registered after the installed ones (for
        embedding and tests); they are checked like any plugin. ``serve_api`` serves the HTTP
        API (``pannier run`` passes ``[api] enabled``; embedded engines opt in). ``worker``:
        which of the node's engine processes this is (default: from the environment the
        ``pannier run --workers`` supervisor sets; a plain engine is worker 0 of 1). Only
        worker 0 serves the API, runs services and polls (:mod:`pannier.workers`)."""
        self.config = config
        self.worker = worker if worker is not None else current_worker()
        self.serve_api = serve_api and self.worker.primary
        self.api_address: str | None = None
        """``http(s)://host:port`` the API listens on, once started (port 0 resolved)."""
        self.draining = False
        """True from the moment a stop is requested: readiness answers 503 from then on."""
        self.stopped_channels: dict[str, Channel] = {}
        """Deployed channels that are stopped (Mirth's STOPPED): kept to start again."""
        self._channel_nursery: trio.Nursery | None = None
        self._channel_runs: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self._control = trio.Lock()
        self.pm = new_plugin_manager()
        for plugin in extra_plugins:
            self.pm.register(plugin)
        self.plugins: list[PluginInfo] = load_plugins(
            self.pm, enabled=config["plugins.enabled"], required=config["plugins.required"]
        )
        self.registry = build_registry(self.pm)
        config.check_plugin_sections(self.registry.config_defaults)
        map_spec = self._select("cluster.map_backend", self.registry.map_backend)
        self.map_backend: MapBackend = map_spec.factory(
            config.plugin_settings(config["cluster.map_backend"])
        )
        self.map_backend_shared: bool = map_spec.shared
        """Whether map values are seen by every engine on the database (not only this one)."""
        if self.worker.primary and config["server.workers"] > 1 and not map_spec.shared:
            log.warning(
                "cluster.map_backend = %r keeps maps in each process: with server.workers = %d "
                "every worker has its own globalMap and configurationMap",
                config["cluster.map_backend"],
                config["server.workers"],
            )
        self.bus: ClusterBus = self._select("cluster.bus", self.registry.cluster_bus).factory(
            config.plugin_settings(config["cluster.bus"])
        )
        allocator_spec = self._select(
            "database.sequence_allocator", self.registry.sequence_allocator
        )
        self.allocator = allocator_spec.factory(
            {"block_size": config["database.sequence_block_size"]}
        )
        self.routes: list[Route] = self._collect_routes()
        self.global_scripts = load_global_scripts(config, self.script_engines)
        self.server_id = worker_server_id(read_server_id(config), self.worker)
        self.store: Store | None = None
        self.channels: dict[str, DeployedChannel] = {}
        self.deploy_errors: dict[str, str] = {}
        self._stop = trio.Event()
        self.stopped = trio.Event()
        """Set once ``run`` has finished, cleanly or not."""
        self._finish_observers = bool(self.pm.hook.pannier_message_finished.get_hookimpls())
        self.ready = False

    def _collect_routes(self) -> list[Route]:
        """Routes from ``pannier_register_routes``: only under ``/extensions/<plugin>/`` or
        ``/system/``, and no two on the same method and path."""
        routes: list[Route] = []
        seen: dict[tuple[str, str], str] = {}
        for plugin, contributed in call_each(self.pm, "pannier_register_routes", {"engine": self}):
            for route in contributed or ():
                if not (
                    route.path.startswith(f"/extensions/{plugin}/")
                    or route.path.startswith("/system/")
                ):
                    raise PluginError(
                        f"plugin {plugin!r} route {route.method} {route.path}: plugin routes "
                        f"must start with /extensions/{plugin}/ or /system/"
                    )
                key = (route.method.upper(), route.path)
                if key in seen:
                    raise PluginError(
                        f"route {key[0]} {key[1]} is registered by both "
                        f"{seen[key]!r} and {plugin!r}"
                    )
                seen[key] = plugin
                routes.append(route)
        return routes

    def _select(self, key: str, lookup: Any) -> Any:
        try:
            return lookup(self.config[key])
        except PluginError as exc:
            raise ConfigError(f"{key} = {self.config[key]!r}: {exc}") from None

    # --- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (idempotent); readiness turns 503 at once."""
        self.draining = True
        self._stop.set()

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(
            config.database_url,
            self.server_id,
            self.allocator,
            pool_size=config["database.pool_size"],
            async_batches=config["database.async_batches"],
        )
        self.store = store
        try:
            async with trio.open_nursery() as root:
                await root.start(store.run)
                mode = await store.create_schema(config["database.mode"])
                log.info("database ready (%s mode)", mode)
                await root.start(self.bus.run)
                if self.worker.primary:  # services run once per node (pannier.workers)
                    await self._start_services(root)
                if self.serve_api:
                    from pannier.api.app import serve_api

                    self.api_address = await root.start(serve_api, self)
                self._run_global_script("deploy", strict=True)
                async with trio.open_nursery() as channel_nursery:
                    self._channel_nursery = channel_nursery
                    for channel in await self.channels_at_start():
                        await self.deploy(channel, channel_nursery)
                    self.ready = True
                    notify(self.pm, "pannier_engine_started", engine=self)
                    log.info(
                        "engine %s started with %d channel(s)", self.server_id, len(self.channels)
                    )
                    task_status.started(self)
                    await self._stop.wait()
                    self.ready = False
                    self.draining = True
                    notify(self.pm, "pannier_engine_stopping", engine=self)
                    await self._drain_all()
                    channel_nursery.cancel_scope.cancel()
                for channel_id in [*self.channels, *self.stopped_channels]:
                    self.channels.pop(channel_id, None)
                    self.stopped_channels.pop(channel_id, None)
                    notify(
                        self.pm, "pannier_channel_undeployed", engine=self, channel_id=channel_id
                    )
                self._run_global_script("undeploy", strict=False)
                root.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.map_backend.aclose()
                await store.aclose()
            self.stopped.set()
            log.info("engine %s stopped", self.server_id)

    async def _start_services(self, nursery: trio.Nursery) -> None:
        for plugin, services in call_each(self.pm, "pannier_register_services", {"engine": self}):
            for service in services or ():
                log.info("starting service %s from plugin %s", service.name, plugin)
                await nursery.start(service.run, self)

    def _run_global_script(self, which: str, *, strict: bool) -> None:
        """Run the global deploy or undeploy script, if any. ``strict``: an error stops
        start-up (re-raised as a :class:`ConfigError` naming the key); else it is logged."""
        script = getattr(self.global_scripts, which)
        if script is None:
            return
        try:
            script({"logger": script_log})
        except Exception as exc:
            if strict:
                message = f"scripts.{which}: the global {which} script failed: {exc}"
                raise ConfigError(message) from None
            log.error("scripts.%s: the global %s script failed: %s", which, which, exc)

    async def _drain_all(self) -> None:
        deadline = trio.current_time() + self.config["engine.drain_seconds"]
        async with trio.open_nursery() as nursery:
            for deployed in self.channels.values():
                nursery.start_soon(deployed.drain, deadline)

    # --- channels ----------------------------------------------------------------------------

    def channels_from_config(self) -> list[Channel]:
        """Channels from the files ``[channels] paths`` names, in path order."""
        channels = []
        for pattern in self.config["channels.paths"]:
            full = str(self.config.resolve_path(pattern))
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            for path in matches:
                if not Path(path).exists():
                    raise ConfigError(
                        f"channels.paths: {pattern!r} names {path}, which does not exist"
                    )
                channels.append(load_channel_file(path))
        return channels

    async def deploy(
        self, channel: Channel, nursery: trio.Nursery | None = None
    ) -> DeployedChannel | None:
        """Deploy and start ``channel``; a failure is logged and kept in ``deploy_errors``."""
        deployed = await self._start_channel(channel, nursery)
        if deployed is not None:
            log.info("channel %r deployed (%s)", channel.name, channel.id)
            notify(self.pm, "pannier_channel_deployed", engine=self, channel=channel)
        return deployed

    async def _start_channel(
        self, channel: Channel, nursery: trio.Nursery | None = None
    ) -> DeployedChannel | None:
        nursery = nursery or self._channel_nursery
        if nursery is None or self._stop.is_set():
            self.deploy_errors[channel.id] = "the engine is not running or is stopping"
            return None
        try:
            deployed = await self._build(channel)
            await nursery.start(self._run_channel, deployed)
        except Exception as exc:
            message = (
                str(exc)
                if isinstance(exc, (DeployError, PluginError, OSError))
                else f"{type(exc).__name__}: {exc}"
            )
            log.error("channel %r (%s) failed to deploy: %s", channel.name, channel.id, message)
            self.deploy_errors[channel.id] = message
            return None
        self.deploy_errors.pop(channel.id, None)
        self.stopped_channels.pop(channel.id, None)
        self.channels[channel.id] = deployed
        return deployed

    async def _run_channel(
        self, deployed: DeployedChannel, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        """Run one channel under its own cancel scope, so it can stop alone."""
        done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._channel_runs[deployed.id] = (scope, done)
                await deployed.run(task_status=task_status)
        finally:
            done.set()

    async def channels_at_start(self) -> list[Channel]:
        """The config's channel files, then enabled channels created through the API (kept
        in the CHANNEL table). A file wins over a stored channel with the same id."""
        from pannier.api import library

        channels = self.channels_from_config()
        assert self.store is not None
        disabled = await self.store.run_sync(library.disabled_ids, self.store)
        from_files = {channel.id for channel in channels}
        stored = await self.store.run_sync(library.load_api_channels, self.store)
        channels = [c for c in channels if c.id not in disabled]
        for channel in stored:
            if channel.id not in from_files and channel.id not in disabled:
                channels.append(channel)
        return channels

    # --- channel control at runtime (the API's deploy / start / stop / pause) -----------------

    def channel_state(self, channel_id: str) -> str | None:
        """Mirth's state name of a deployed channel; None when it is not deployed."""
        deployed = self.channels.get(channel_id)
        if deployed is not None:
            return deployed.state.upper()
        return "STOPPED" if channel_id in self.stopped_channels else None

    def deployed_model(self, channel_id: str) -> Channel | None:
        """The definition a deployed channel (started, paused or stopped) runs."""
        deployed = self.channels.get(channel_id)
        if deployed is not None:
            return deployed.channel
        return self.stopped_channels.get(channel_id)

    async def redeploy(self, channel: Channel) -> DeployedChannel | None:
        """Undeploy ``channel.id`` if deployed, then deploy ``channel``."""
        async with self._control:
            await self._stop_channel(channel.id, drain=True)
            self.stopped_channels.pop(channel.id, None)
            return await self.deploy(channel)

    async def undeploy_channel(self, channel_id: str) -> bool:
        """Stop (draining) and forget a deployed channel; False when it was not deployed."""
        async with self._control:
            was_running = await self._stop_channel(channel_id, drain=True)
            was_stopped = self.stopped_channels.pop(channel_id, None) is not None
        if not (was_running or was_stopped):
            return False
        notify(self.pm, "pannier_channel_undeployed", engine=self, channel_id=channel_id)
        log.info("channel %s undeployed", channel_id)
        return True

    async def start_channel(self, channel_id: str) -> DeployedChannel | None:
        """Start a stopped channel again (a paused one resumes)."""
        async with self._control:
            deployed = self.channels.get(channel_id)
            if deployed is not None:
                await deployed.resume()
                return deployed
            channel = self.stopped_channels.get(channel_id)
            if channel is None:
                return None
            return await self._start_channel(channel)

    async def stop_channel(self, channel_id: str, *, halt: bool = False) -> bool:
        """Stop a channel: in-flight messages finish (halt: cancelled at once, recovered at
        the next start); the channel stays deployed as STOPPED."""
        async with self._control:
            deployed = self.channels.get(channel_id)
            if not await self._stop_channel(channel_id, drain=not halt):
                return channel_id in self.stopped_channels
            assert deployed is not None
            self.stopped_channels[channel_id] = deployed.channel
            return True

    async def pause_channel(self, channel_id: str) -> bool:
        async with self._control:
            deployed = self.channels.get(channel_id)
            if deployed is None:
                return False
            await deployed.pause(trio.current_time() + self.config["engine.drain_seconds"])
            return True

    async def resume_channel(self, channel_id: str) -> bool:
        async with self._control:
            deployed = self.channels.get(channel_id)
            if deployed is None:
                return False
            await deployed.resume()
            return True

    def set_destination_running(self, channel_id: str, metadata_id: int, running: bool) -> bool:
        """Start or stop one destination connector of a started channel (Mirth's connector
        ``_start`` / ``_stop``). Only a queued destination can stop: its messages keep being
        accepted and wait in the queue until it starts again, so nothing is lost. False when
        the channel is not started; a :class:`DeployError` when the destination has no queue."""
        deployed = self.channels.get(channel_id)
        if deployed is None:
            return False
        queue = deployed.queues.get(metadata_id)
        if queue is None:
            raise DeployError(
                f"destination {metadata_id} of channel {deployed.channel.name!r} has no queue; "
                f"only a destination with queueEnabled = true can be stopped (its messages "
                f"then wait in the queue)"
            )
        if running:
            queue.start()
        else:
            queue.stop()
        return True

    async def _stop_channel(self, channel_id: str, *, drain: bool) -> bool:
        deployed = self.channels.pop(channel_id, None)
        if deployed is None:
            return False
        if drain:
            await deployed.drain(trio.current_time() + self.config["engine.drain_seconds"])
        scope, done = self._channel_runs.pop(channel_id)
        scope.cancel()
        await done.wait()
        return True

    async def _build(self, channel: Channel) -> DeployedChannel:
        assert self.store is not None
        source, source_type, datatype, destinations, scripts = self.prepare(channel)
        channel_store = await self.store.open_channel(channel.id)
        if self.config["database.mode"] != "takeover":
            # Mirth reads channel definitions from CHANNEL; in takeover the Java side owns it.
            await self._save_definition(channel)
        await self.store.add_metadata_columns(
            channel_store, [(c.name, c.type) for c in channel.properties.metaDataColumns]
        )
        return DeployedChannel(
            self, channel, channel_store, source, source_type, datatype, destinations, scripts
        )

    async def _save_definition(self, channel: Channel) -> None:
        """Write the channel to Mirth's CHANNEL table. A channel Mirth's XML cannot describe
        is still deployed: the row is skipped with a warning, never the deploy."""
        assert self.store is not None
        classes = {
            name: kind.mirth_properties_class
            for (name, _mode), (kind, _plugin) in self.registry.connectors.items()
            if kind.mirth_properties_class
        }
        defaults = {
            name: kind.defaults
            for (name, _mode), (kind, _plugin) in self.registry.connectors.items()
        }
        try:
            xml = channel_to_xml(
                channel,
                export_data=False,
                properties_classes=classes,
                properties_defaults=defaults,
            )
        except MirthXmlError as exc:
            log.warning(
                "channel %r is deployed but not written to the CHANNEL table: %s", channel.name, exc
            )
            return
        await self.store.save_channel(channel.id, channel.name, channel.revision, xml)

    def prepare(
        self, channel: Channel
    ) -> tuple[SourceConnector, ConnectorType, Any, list[DestinationRuntime], SourceScripts]:
        """Resolve and check everything a channel needs, without touching the database or
        the network; raises :class:`DeployError` naming what is wrong."""
        registry = self.registry
        where = f"channel {channel.name!r}"
        source_model = channel.source
        try:
            source_type = registry.connector(source_model.transportName, "source")
        except PluginError as exc:
            raise DeployError(f"{where} source: {exc}") from None
        defaults = dict(source_type.defaults)
        defaults.pop("responseVariable", None)
        properties = check_properties(
            f"{where} source.properties", defaults, source_model.properties
        )
        if not source_model.source.respondAfterProcessing and (
            source_model.source.responseVariable not in ("", "None", AUTO_BEFORE)
        ):
            raise DeployError(
                f"{where} source: with the source queue on (respondAfterProcessing = false) "
                f"the response can only be 'None' or '{AUTO_BEFORE}', not "
                f"{source_model.source.responseVariable!r}"
            )
        if not source_model.source.respondAfterProcessing and (
            not source_model.source.responseVariable
        ):
            source_model.source.responseVariable = (
                AUTO_BEFORE
                if str(source_type.defaults.get("responseVariable", "None")) != "None"
                else "None"
            )
        if not source_model.source.responseVariable:
            source_model.source.responseVariable = str(
                source_type.defaults.get("responseVariable", "None")
            )
        source = _build(
            source_type, self._setup(channel, source_model, properties), f"{where} source"
        )
        if not isinstance(source, SourceConnector):
            raise DeployError(
                f"{where}: {source_model.transportName!r} did not build a source connector"
            )
        datatype = self._datatype(where, source_model)
        source_scripts = SourceScripts(
            filter=self._compile(compile_filter, source_model.filter, f"{where} source"),
            transformer=self._compile(
                compile_transformer, source_model.transformer, f"{where} source"
            ),
            preprocessor=chain_preprocessors(
                self.global_scripts.preprocessor,
                self._script(
                    channel.preprocessingScript, f"{where} preprocessor", PREPROCESSOR_NAMES
                ),
            ),
            postprocessor=chain_postprocessors(
                self._script(
                    channel.postprocessingScript, f"{where} postprocessor", POSTPROCESSOR_NAMES
                ),
                self.global_scripts.postprocessor,
            ),
            deploy=self._script(channel.deployScript, f"{where} deploy script", LIFECYCLE_NAMES),
            undeploy=self._script(
                channel.undeployScript, f"{where} undeploy script", LIFECYCLE_NAMES
            ),
        )

        destinations = []
        chain_id = 0
        order_id = 0
        for model in channel.enabled_destinations:
            here = f"{where} destination {model.name!r}"
            if chain_id == 0 or not model.waitForPrevious:
                chain_id, order_id = chain_id + 1, 0
            order_id += 1
            try:
                kind: ConnectorType = registry.connector(model.transportName, "destination")
            except PluginError as exc:
                raise DeployError(f"{here}: {exc}") from None
            if model.queue.queueEnabled and model.queue.threadCount < 1:
                raise DeployError(
                    f"{here}: threadCount {model.queue.threadCount} is not valid; "
                    f"expected a number of queue threads of at least 1"
                )
            dest_properties = check_properties(
                f"{here}.properties", kind.defaults, model.properties
            )
            model.properties = dest_properties
            connector = _build(kind, self._setup(channel, model, dest_properties), here)
            if not isinstance(connector, DestinationConnector):
                raise DeployError(
                    f"{here}: {model.transportName!r} did not build a destination connector"
                )
            destinations.append(
                DestinationRuntime(
                    model=model,
                    type=kind,
                    connector=connector,
                    chain_id=chain_id,
                    order_id=order_id,
                    templated=tuple(sorted(kind.templated)),
                    datatype=self._datatype(here, model),
                    filter=self._compile(compile_filter, model.filter, here),
                    transformer=self._compile(compile_transformer, model.transformer, here),
                    response_transformer=self._compile(
                        compile_transformer, model.responseTransformer, f"{here} response"
                    ),
                )
            )
        return source, source_type, datatype, destinations, source_scripts

    @property
    def script_engines(self) -> dict[str, ScriptEngineSpec]:
        return {language: spec for language, (spec, _) in self.registry.script_engines.items()}

    def _script(self, script: Any, where: str, names: tuple[str, ...]) -> Any:
        try:
            return compile_script(script, where, names, self.script_engines)
        except ScriptError as exc:
            raise DeployError(str(exc)) from None

    def _compile(self, compiler: Callable[[Any, str, Any], T], element: Any, where: str) -> T:
        try:
            return compiler(element, where, self.script_engines)
        except ScriptError as exc:
            raise DeployError(str(exc)) from None

    def _datatype(self, where: str, model: Connector) -> Any:
        try:
            spec = self.registry.datatype(model.inboundDataType)
        except PluginError as exc:
            raise DeployError(f"{where}: {exc}") from None
        properties = check_properties(
            f"{where}.inboundProperties", spec.defaults, model.inboundProperties
        )
        try:
            return spec.factory(properties)
        except ValueError as exc:
            raise DeployError(f"{where}.inboundProperties: {exc}") from None

    def _setup(
        self, channel: Channel, model: Connector, properties: Mapping[str, Any]
    ) -> ConnectorSetup:
        def report_state(state: str, details: Mapping[str, Any]) -> None:
            notify(
                self.pm,
                "pannier_connector_state_changed",
                channel_id=channel.id,
                metadata_id=model.metaDataId,
                state=state,
                details=details,
            )

        setup = ConnectorSetup(
            router=self,
            channel_id=channel.id,
            channel_name=channel.name,
            metadata_id=model.metaDataId,
            name=model.name,
            properties=properties,
            report_state=report_state,
            base_directory=str(self.config.base_dir),
        )
        if self.worker.primary:
            return setup
        return dataclasses.replace(setup, should_poll=_polls_elsewhere)

    async def route(self, channel_id: str, message: RawMessage) -> DispatchResult:
        """The :class:`~pannier.connectors.Router` connectors and scripts use: dispatch
        ``message`` into the deployed channel ``channel_id``."""
        deployed = self.channels.get(channel_id)
        if deployed is None:
            raise ChannelNotDeployedError(f"no channel with id {channel_id!r} is deployed")
        return await deployed.dispatch(message)

    def notify_message_finished(
        self, channel_id: str, message_id: int, source_status: Status, ctx: MessageContext
    ) -> None:
        """Tell ``pannier_message_finished`` observers; free when there are none."""
        if not self._finish_observers:
            return
        statuses = {0: source_status.value}
        for key, response in ctx.response_map.items():
            if key.startswith("d") and key[1:].isdigit():
                statuses[int(key[1:])] = response.status.value
        notify(
            self.pm,
            "pannier_message_finished",
            channel_id=channel_id,
            message_id=message_id,
            statuses=statuses,
        )
