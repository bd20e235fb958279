"""Plugin discovery (stevedore) and dispatch (pluggy), and the registries built from them.

Each installed distribution names a module in the entry-point group ``pannier.plugins``. The
kernel loads them with stevedore — a plugin that fails to import is reported and skipped,
unless it is required, which stops start-up — and registers each module on a pluggy manager
owned by one engine (never a module global, so tests can run several engines in a process).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from stevedore import ExtensionManager

from pannier import hookspecs
from pannier.bus import ClusterBusSpec
from pannier.connectors import ConnectorType
from pannier.datatypes import DataTypeSpec
from pannier.extensions import CliCommand
from pannier.maps import MapBackendSpec
from pannier.scripting import ScriptEngineSpec
from pannier.sequences import SequenceAllocatorSpec

log = logging.getLogger("pannier.plugins")

ENTRY_POINT_GROUP = "pannier.plugins"
HOOK_PREFIX = "pannier_"
T = TypeVar("T")

#: Where first-party names come from, for "install X to get it" hints.
KNOWN_PROVIDERS = {
    ("map backend", "redis"): "pannier-redis",
    ("map backend", "database"): "pannier-sql",
    ("cluster bus", "redis"): "pannier-redis",
    ("cluster bus", "database"): "pannier-sql",
    ("connector", "TCP Listener"): "pannier-mllp",
    ("connector", "TCP Sender"): "pannier-mllp",
    ("connector", "File Writer"): "pannier-file",
    ("connector", "File Reader"): "pannier-file",
    ("connector", "HTTP Listener"): "pannier-http",
    ("connector", "HTTP Sender"): "pannier-http",
    ("connector", "Channel Reader"): "pannier-vm",
    ("connector", "Channel Writer"): "pannier-vm",
    ("connector", "Database Reader"): "pannier-database",
    ("connector", "Database Writer"): "pannier-database",
    ("data type", "HL7V2"): "pannier-hl7v2",
    ("data type", "XML"): "pannier-xml",
    ("data type", "JSON"): "pannier-json",
    ("data type", "DELIMITED"): "pannier-delimited",
    ("data type", "RAW"): "pannier-raw",
}


class PluginError(Exception):
    """Plugins cannot be set up as configured; the text names the plugin and what is wrong."""


class PannierPluginManager(pluggy.PluginManager):
    """A pluggy manager that treats every ``pannier_*`` function of a plugin as a hook
    implementation, marked or not, so a misspelt hook name is caught by ``check_pending``."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX):
            attribute = getattr(plugin, name, None)
            if inspect.isfunction(attribute):
                return {}
        return opts


@dataclass
class PluginInfo:
    """What ``pannier plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    contributes: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def new_plugin_manager() -> PannierPluginManager:
    pm = PannierPluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _distributions_by_entry_point() -> dict[tuple[str, str], importlib.metadata.Distribution]:
    found = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found[(ep.name, ep.value)] = dist
    return found


def load_plugins(
    pm: PannierPluginManager,
    *,
    enabled: Sequence[str] = (),
    required: Sequence[str] = (),
    quiet: bool = False,
) -> list[PluginInfo]:
    """Discover, load and register plugins on ``pm``; validate hooks; check requirements.

    ``enabled`` (an allow-list, empty for all) narrows what loads; ``core`` always loads.
    ``required`` holds requirement strings (``"pannier-mllp>=0.1"`` or a plugin name): a
    missing, broken or too old one raises :class:`PluginError` naming it. ``quiet`` logs
    broken plugins at DEBUG only (the CLI's command discovery; the command itself reports).
    """
    dists = _distributions_by_entry_point()
    infos: dict[str, PluginInfo] = {}
    allowed = set(enabled) | {"core"} if enabled else None

    def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        if allowed is not None and entry_point.name not in allowed:
            return
        dist = dists.get((entry_point.name, entry_point.value))
        info = PluginInfo(
            entry_point.name,
            dist.metadata["Name"] if dist else "?",
            dist.version if dist else "?",
            entry_point.value,
            error=f"{type(exc).__name__}: {exc}",
        )
        infos[entry_point.name] = info
        log.log(
            logging.DEBUG if quiet else logging.ERROR,
            "plugin %r (%s) could not be loaded and is skipped: %s",
            entry_point.name,
            info.distribution,
            info.error,
        )

    manager = ExtensionManager(
        ENTRY_POINT_GROUP, invoke_on_load=False, on_load_failure_callback=on_failure
    )
    for extension in sorted(manager.extensions, key=lambda e: (e.name != "core", e.name)):
        if allowed is not None and extension.name not in allowed:
            continue
        entry_point = extension.entry_point
        dist = dists.get((entry_point.name, entry_point.value))
        info = PluginInfo(
            extension.name,
            dist.metadata["Name"] if dist else "?",
            dist.version if dist else "?",
            entry_point.value,
        )
        infos[extension.name] = info
        try:
            pm.register(extension.plugin, name=extension.name)
        except pluggy.PluginValidationError as exc:
            info.error = str(exc)
            log.error("plugin %r is invalid and is skipped: %s", extension.name, exc)
    _check_pending(pm, infos)
    _check_required(required, infos)
    return sorted(infos.values(), key=lambda i: (i.name != "core", i.name))


def _check_pending(pm: PannierPluginManager, infos: Mapping[str, PluginInfo]) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or "?"
        info = infos.get(plugin_name)
        where = f"{plugin_name} ({info.distribution})" if info else plugin_name
        known = sorted(name for name in dir(pm.hook) if name.startswith(HOOK_PREFIX))
        raise PluginError(
            f"plugin {where} implements an unknown hook: {exc}. Known hooks: {', '.join(known)}"
        ) from None


def _check_required(required: Sequence[str], infos: Mapping[str, PluginInfo]) -> None:
    for text in required:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise PluginError(
                f"plugins.required: {text!r} is not a requirement such as "
                f"'pannier-mllp>=0.1': {exc}"
            ) from None
        wanted = canonicalize_name(requirement.name)
        match = next(
            (
                i
                for i in infos.values()
                if canonicalize_name(i.name) == wanted
                or canonicalize_name(i.distribution) == wanted
            ),
            None,
        )
        if match is None:
            installed = (
                ", ".join(f"{i.name} ({i.distribution} {i.version})" for i in infos.values())
                or "none"
            )
            raise PluginError(
                f"required plugin {text!r} is not installed. Installed plugins: {installed}"
            )
        if match.error:
            raise PluginError(
                f"required plugin {text!r} ({match.distribution}) is broken: {match.error}"
            )
        if requirement.specifier and not requirement.specifier.contains(
            match.version, prereleases=True
        ):
            raise PluginError(
                f"required plugin {text!r} is installed at version "
                f"{match.version}, which does not satisfy it"
            )


def call_each(
    pm: PannierPluginManager,
    hook_name: str,
    kwargs: Mapping[str, Any] | None = None,
) -> Iterable[tuple[str, Any]]:
    """Call every implementation of a register hook; yield ``(plugin name, result)``."""
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order
        args = {name: (kwargs or {})[name] for name in impl.argnames}
        yield impl.plugin_name, impl.function(**args)


def notify(pm: PannierPluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every observer of ``hook_name``; one failing observer is logged, not fatal."""
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception:
            log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)


@dataclass
class Registry:
    """Everything the loaded plugins contribute, by name."""

    connectors: dict[tuple[str, str], tuple[ConnectorType, str]] = field(default_factory=dict)
    datatypes: dict[str, tuple[DataTypeSpec, str]] = field(default_factory=dict)
    map_backends: dict[str, tuple[MapBackendSpec, str]] = field(default_factory=dict)
    sequence_allocators: dict[str, tuple[SequenceAllocatorSpec, str]] = field(default_factory=dict)
    cluster_buses: dict[str, tuple[ClusterBusSpec, str]] = field(default_factory=dict)
    commands: dict[str, tuple[CliCommand, str]] = field(default_factory=dict)
    script_engines: dict[str, tuple[ScriptEngineSpec, str]] = field(default_factory=dict)
    config_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def connector(self, transport_name: str, mode: str) -> ConnectorType:
        entry = self.connectors.get((transport_name, mode))
        if entry is None:
            installed = sorted(name for name, m in self.connectors if m == mode)
            raise PluginError(_unknown("connector", transport_name, installed, f"{mode} connector"))
        return entry[0]

    def datatype(self, name: str) -> DataTypeSpec:
        return self._get(self.datatypes, "data type", name)

    def map_backend(self, name: str) -> MapBackendSpec:
        return self._get(self.map_backends, "map backend", name)

    def sequence_allocator(self, name: str) -> SequenceAllocatorSpec:
        return self._get(self.sequence_allocators, "sequence allocator", name)

    def cluster_bus(self, name: str) -> ClusterBusSpec:
        return self._get(self.cluster_buses, "cluster bus", name)

    @staticmethod
    def _get(table: Mapping[str, tuple[T, str]], kind: str, name: str) -> T:
        entry = table.get(name)
        if entry is None:
            raise PluginError(_unknown(kind, name, sorted(table), kind))
        return entry[0]


def _unknown(kind: str, name: str, installed: list[str], label: str) -> str:
    message = f"no {label} named {name!r} is installed; installed: {', '.join(installed) or 'none'}"
    provider = KNOWN_PROVIDERS.get((kind, name))
    if provider:
        message += f". Install {provider} to get it"
    return message


def build_registry(pm: PannierPluginManager) -> Registry:
    """Collect every register hook's contributions; duplicates stop start-up naming both."""
    registry = Registry()

    def add(table: dict[Any, tuple[T, str]], key: Any, item: T, plugin: str, what: str) -> None:
        if key in table:
            raise PluginError(
                f"{what} {key!r} is provided by both {table[key][1]!r} and "
                f"{plugin!r}; uninstall or disable one of them"
            )
        table[key] = (item, plugin)

    for plugin, items in call_each(pm, "pannier_register_connectors"):
        for item in items or ():
            add(registry.connectors, (item.transport_name, item.mode), item, plugin, "connector")
    for plugin, items in call_each(pm, "pannier_register_datatypes"):
        for item in items or ():
            add(registry.datatypes, item.name, item, plugin, "data type")
    for plugin, items in call_each(pm, "pannier_register_map_backends"):
        for item in items or ():
            add(registry.map_backends, item.name, item, plugin, "map backend")
    for plugin, items in call_each(pm, "pannier_register_sequence_allocators"):
        for item in items or ():
            add(registry.sequence_allocators, item.name, item, plugin, "sequence allocator")
    for plugin, items in call_each(pm, "pannier_register_cluster_buses"):
        for item in items or ():
            add(registry.cluster_buses, item.name, item, plugin, "cluster bus")
    for plugin, items in call_each(pm, "pannier_register_script_engines"):
        for item in items or ():
            add(registry.script_engines, item.language.lower(), item, plugin, "script engine")
    for plugin, items in call_each(pm, "pannier_register_commands"):
        for item in items or ():
            if item.name in registry.commands:
                log.warning(
                    "command %r from plugin %r is skipped: plugin %r has it already",
                    item.name,
                    plugin,
                    registry.commands[item.name][1],
                )
                continue
            registry.commands[item.name] = (item, plugin)
    owners: dict[str, tuple[dict[str, Any], str]] = {}
    for plugin, defaults in call_each(pm, "pannier_config_defaults"):
        for name, values in (defaults or {}).items():
            add(owners, name, dict(values), plugin, "plugin settings section")
    registry.config_defaults = {name: values for name, (values, _plugin) in owners.items()}
    return registry


def describe_contributions(pm: PannierPluginManager, infos: list[PluginInfo]) -> None:
    """Fill ``PluginInfo.contributes`` for ``pannier plugins``."""
    by_name = {info.name: info for info in infos}
    labels: list[tuple[str, str, Callable[[Any], str]]] = [
        ("pannier_register_connectors", "connectors", lambda c: f"{c.transport_name} ({c.mode})"),
        ("pannier_register_datatypes", "data types", lambda d: d.name),
        ("pannier_register_map_backends", "map backends", lambda m: m.name),
        ("pannier_register_sequence_allocators", "sequence allocators", lambda s: s.name),
        ("pannier_register_cluster_buses", "cluster buses", lambda b: b.name),
        ("pannier_register_commands", "commands", lambda c: c.name),
        ("pannier_register_script_engines", "script engines", lambda e: e.language),
    ]
    for hook_name, label, show in labels:
        for plugin, items in call_each(pm, hook_name):
            if plugin in by_name and items:
                by_name[plugin].contributes.setdefault(label, []).extend(show(i) for i in items)
    others = {"pannier_register_routes": "API routes", "pannier_register_services": "services"}
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        if name not in by_name:
            continue
        for hook_name in dir(plugin):
            if hook_name in others:
                by_name[name].contributes.setdefault(others[hook_name], []).append("yes")
            elif (
                hook_name.startswith(HOOK_PREFIX)
                and not hook_name.startswith("pannier_register_")
                and hook_name != "pannier_config_defaults"
                and inspect.isfunction(getattr(plugin, hook_name))
            ):
                by_name[name].contributes.setdefault("observes", []).append(
                    hook_name.removeprefix(HOOK_PREFIX)
                )
