"""Global scripts (Mirth's Global Deploy / Undeploy / Preprocessor / Postprocessor).

They come from ``[scripts]`` in ``pannier.toml`` — Python code inline, or a ``.py`` file
relative to the config file — so they live in git with the channels. Mirth's order is kept:

- the global deploy script runs once at start, before any channel deploys (an error stops
  start-up, as a broken configuration would); the global undeploy script runs once at stop,
  after every channel has drained (an error is logged);
- per message, the global preprocessor runs first and its return value (when a string) is
  the message the channel's preprocessor sees;
- the channel's postprocessor runs first, then the global one, which also sees the channel
  postprocessor's result as ``response``; the global result wins when it is not ``None``.

Chaining happens once per deploy (:func:`chain_preprocessors`, :func:`chain_postprocessors`),
so a channel without global scripts pays nothing per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pannier.config import Config, ConfigError
from pannier.model.channel import Script
from pannier.runtime.scripts import Compiled, Engines, Scope, compile_script
from pannier.scripting import ScriptError

LIFECYCLE = ("logger",)
PREPROCESSOR = ("message", "channel_map", "source_map", "logger")
POSTPROCESSOR = ("message", "channel_map", "source_map", "response_map", "response", "logger")


@dataclass(frozen=True)
class GlobalScripts:
    deploy: Compiled | None = None
    undeploy: Compiled | None = None
    preprocessor: Compiled | None = None
    postprocessor: Compiled | None = None


def load_global_scripts(config: Config, engines: Engines) -> GlobalScripts:
    """Compile ``[scripts]``; a missing file or a script that does not compile is a
    :class:`ConfigError` naming the key."""
    language = str(config["scripts.language"])
    compiled: dict[str, Compiled | None] = {}
    for key, names in (
        ("deploy", LIFECYCLE),
        ("undeploy", LIFECYCLE),
        ("preprocessor", PREPROCESSOR),
        ("postprocessor", POSTPROCESSOR),
    ):
        where = f"scripts.{key}"
        code = _script_text(config, where, str(config[where]))
        try:
            compiled[key] = compile_script(Script(code, language), where, names, engines)
        except ScriptError as exc:
            raise ConfigError(str(exc)) from None
    return GlobalScripts(**compiled)


def _script_text(config: Config, where: str, value: str) -> str:
    if "\n" in value or not value.strip().endswith(".py"):
        return value
    path = config.resolve_path(value.strip())
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{where} = {value!r}: cannot read {path}: {exc.strerror}; expected Python code "
            f"or a .py file relative to the config file"
        ) from None


def chain_preprocessors(first: Compiled | None, second: Compiled | None) -> Compiled | None:
    """The global preprocessor (``first``), then the channel's on its result."""
    if first is None or second is None:
        return first or second

    def both(scope: Scope) -> object:
        result = first(scope)
        if isinstance(result, str):
            scope = {**scope, "message": result}
        after = second(scope)
        return after if isinstance(after, str) else scope["message"]

    return both


def chain_postprocessors(channel: Compiled | None, global_: Compiled | None) -> Compiled | None:
    """The channel's postprocessor, then the global one seeing its result as ``response``;
    the global result wins unless it is ``None``."""
    if global_ is None:
        return channel

    def both(scope: Scope) -> object:
        response = channel(scope) if channel is not None else None
        result = global_({**scope, "response": response})
        return response if result is None else result

    return both
