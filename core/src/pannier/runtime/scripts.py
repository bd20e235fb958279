"""Filters and transformers written in Python, compiled once per deploy.

A filter is a list of rules; a transformer a list of steps (``Element`` in the channel model).
Kinds the kernel runs:

* ``python`` — ``code``: a Python expression (a rule's verdict) or statements (a rule
  ``return``s its verdict), or ``callable``: ``"package.module:function"``. Either sees
  ``msg`` (the parsed message, e.g. ``msg["PID.5.1"]``, assignable), ``raw``,
  ``channel_map``, ``connector_map``, ``source_map`` (read-only), ``response_map``,
  ``logger`` and the shared ``global_map``, ``global_channel_map`` and ``configuration_map``
  (snapshots; the caller writes changes back); a callable receives those its signature
  names.
* ``rule`` (filter) — Mirth's rule builder: ``field`` (a message path), ``condition``
  (EXISTS, NOT_EXIST, EQUALS, NOT_EQUAL, CONTAINS, NOT_CONTAIN) and ``values``.
* ``mapper`` (transformer) — Mirth's mapper: ``variable`` set to the value at ``mapping``
  (a message path), or ``defaultValue`` when empty, in the map ``scope`` (channel,
  connector, response, global or globalChannel).

Rules combine left to right with their ``operator`` (AND binds tighter than OR, as in the
JavaScript Mirth generates); an empty filter accepts. Scripts are trusted code written by
channel administrators: they run in the engine's process with its permissions.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pannier.model.channel import Element, Filter, Script, Transformer
from pannier.scripting import PYTHON, ScriptEngineSpec, ScriptError

log = logging.getLogger("pannier.script")

Scope = dict[str, Any]
Compiled = Callable[[Scope], Any]
SHARED_MAPS = ("global_map", "global_channel_map", "configuration_map")
NAMES = (
    "msg",
    "raw",
    "channel_map",
    "connector_map",
    "source_map",
    "response_map",
    "logger",
    "response",
    *SHARED_MAPS,
)


@dataclass(frozen=True)
class CompiledFilter:
    rules: tuple[tuple[str, Compiled], ...]
    shared: bool = False
    """Whether a rule reads or writes the global, global channel or configuration map."""

    def accepts(self, scope: Scope) -> bool:
        """Evaluate the rules with Mirth's operators (AND before OR)."""
        if not self.rules:
            return True
        any_group = False
        group = True
        for index, (operator, rule) in enumerate(self.rules):
            if index and operator == "OR":
                any_group = any_group or group
                group = True
            group = group and bool(rule(scope))
        return any_group or group


@dataclass(frozen=True)
class CompiledTransformer:
    steps: tuple[Compiled, ...]
    shared: bool = False
    """Whether a step reads or writes the global, global channel or configuration map."""

    def run(self, scope: Scope) -> None:
        for step in self.steps:
            step(scope)


def _function(engine: ScriptEngineSpec, name: str, code: str, *, verdict: bool) -> Compiled:
    function = engine.compile(code, NAMES, name, verdict)
    return lambda scope: function(**scope)


def _callable(name: str, target: str) -> Compiled:
    module_name, _, attribute = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ScriptError(f"{name}: cannot import {target!r}: {exc}") from None
    wanted = [p for p in inspect.signature(function).parameters if p in NAMES]
    return lambda scope: function(**{key: scope[key] for key in wanted})


def _path_value(scope: Scope, path: str) -> str:
    try:
        value = scope["msg"][path]
    except (KeyError, IndexError, ValueError, TypeError):
        return ""
    return "" if value is None else str(value)


_CONDITIONS: dict[str, Callable[[str, list[str]], bool]] = {
    "EXISTS": lambda value, _values: value != "",
    "NOT_EXIST": lambda value, _values: value == "",
    "EQUALS": lambda value, values: value in values,
    "NOT_EQUAL": lambda value, values: value not in values,
    "CONTAINS": lambda value, values: any(v in value for v in values),
    "NOT_CONTAIN": lambda value, values: not any(v in value for v in values),
}

_SCOPES = {
    "channel": "channel_map",
    "connector": "connector_map",
    "response": "response_map",
    "global": "global_map",
    "globalchannel": "global_channel_map",
}


def uses_shared_maps(element: Element) -> bool:
    """Whether an element touches a shared map, found once at deploy so that messages of
    channels whose scripts never do pay nothing for them."""
    settings = element.settings
    if element.kind == "mapper":
        return _SCOPES.get(str(settings.get("scope", "channel")).lower()) in SHARED_MAPS
    if element.kind != "python":
        return False
    if "callable" in settings:
        module_name, _, attribute = str(settings["callable"]).partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError):
            return False
        return any(p in SHARED_MAPS for p in inspect.signature(function).parameters)
    try:
        tree = ast.parse(textwrap.dedent(str(settings.get("code", ""))))
    except SyntaxError:
        return False
    return any(isinstance(n, ast.Name) and n.id in SHARED_MAPS for n in ast.walk(tree))


Engines = Mapping[str, ScriptEngineSpec]
_BUILT_IN: Engines = {"python": PYTHON}


def _element(element: Element, where: str, *, verdict: bool, engines: Engines) -> Compiled:
    name = f"{where} {element.kind} {element.name!r}" if element.name else f"{where} {element.kind}"
    settings = element.settings
    if element.kind == "python":
        if "callable" in settings:
            return _callable(name, str(settings["callable"]))
        if "code" not in settings:
            raise ScriptError(f"{name}: needs 'code' or 'callable'")
        return _function(
            engines.get("python", PYTHON), name, str(settings["code"]), verdict=verdict
        )
    if element.kind == "rule" and verdict:
        condition = str(settings.get("condition", "EXISTS")).upper()
        if condition not in _CONDITIONS:
            raise ScriptError(
                f"{name}: condition {condition!r}; expected one of {', '.join(_CONDITIONS)}"
            )
        path = str(settings.get("field", ""))
        values = [str(v) for v in settings.get("values", [])]
        check = _CONDITIONS[condition]
        return lambda scope: check(_path_value(scope, path), values)
    if element.kind == "mapper" and not verdict:
        variable = str(settings.get("variable", ""))
        mapping = str(settings.get("mapping", ""))
        default = str(settings.get("defaultValue", ""))
        scope_name = _SCOPES.get(str(settings.get("scope", "channel")).lower())
        if settings.get("replacements"):
            raise ScriptError(f"{name}: mapper replacements are not supported yet")
        if not variable or scope_name is None:
            raise ScriptError(
                f"{name}: needs 'variable' and a scope of channel, connector or response"
            )

        def mapper(scope: Scope) -> None:
            scope[scope_name][variable] = _path_value(scope, mapping) or default

        return mapper
    language = element.kind.lower()
    if language in engines:
        code = settings.get("code", settings.get("script"))
        if code is None:
            raise ScriptError(f"{name}: needs 'code'")
        return _function(engines[language], name, str(code), verdict=verdict)
    kinds = "python, rule" if verdict else "python, mapper"
    raise ScriptError(
        f"{name}: kind {element.kind!r} cannot run here (expected {kinds} or a script "
        f"language: installed {', '.join(sorted(engines))}; Mirth JavaScript elements need a "
        f"JavaScript script engine plugin)"
    )


def compile_filter(filter_: Filter, where: str, engines: Engines = _BUILT_IN) -> CompiledFilter:
    rules = [rule for rule in filter_.rules if rule.enabled]
    return CompiledFilter(
        tuple(
            (rule.operator, _element(rule, f"{where} filter", verdict=True, engines=engines))
            for rule in rules
        ),
        shared=any(uses_shared_maps(rule) for rule in rules),
    )


def compile_transformer(
    transformer: Transformer, where: str, engines: Engines = _BUILT_IN
) -> CompiledTransformer:
    steps = [step for step in transformer.steps if step.enabled]
    return CompiledTransformer(
        tuple(
            _element(step, f"{where} transformer", verdict=False, engines=engines) for step in steps
        ),
        shared=any(uses_shared_maps(step) for step in steps),
    )


def make_scope(
    msg: Any,
    raw: str,
    channel_map: dict[str, Any],
    connector_map: dict[str, Any],
    source_map: Mapping[str, Any],
    response_map: dict[str, Any],
    logger: logging.Logger,
    shared: Mapping[str, dict[str, Any]] | None = None,
) -> Scope:
    """The names a script sees. ``shared`` holds snapshots of the shared maps the script
    uses (written back by the caller); others are empty."""
    shared = shared or {}
    return {
        **{name: shared.get(name, {}) for name in SHARED_MAPS},
        "msg": msg,
        "raw": raw,
        "channel_map": channel_map,
        "connector_map": connector_map,
        "source_map": MappingProxyType(dict(source_map)),
        "response_map": response_map,
        "response": None,
        "logger": logger,
    }


def compile_script(
    script: Script, where: str, names: tuple[str, ...], engines: Engines = _BUILT_IN
) -> Compiled | None:
    """A channel script (preprocessor, postprocessor, deploy, undeploy) as a function of the
    scope names given; ``None`` when the script is empty. Its ``return`` value is the result
    (the preprocessor's new message, the postprocessor's response)."""
    if script.is_empty:
        return None
    engine = engines.get(script.language.lower())
    if engine is None:
        raise ScriptError(
            f"{where}: {script.language} scripts need a script engine plugin for that "
            f"language; installed: {', '.join(sorted(engines))}"
        )
    function = engine.compile(script.code, names, where, False)
    return lambda scope: function(**{name: scope[name] for name in names})


@dataclass
class ResponseView:
    """What a response transformer sees as ``response`` and may change: ``status`` (a
    :class:`~pannier.Status`), ``message``, ``status_message`` and ``error``."""

    status: Any
    message: str
    status_message: str
    error: str
