"""``pannier channel import|export|validate``: Mirth channel XML ⇄ Pannier channel files.

::

    pannier channel import adt.xml [--to adt.toml] [--force]   # Mirth XML → TOML file
    pannier channel export adt.toml --format xml               # → stdout (Mirth 4.5.2 XML)
    pannier channel export adt.xml --format toml               # → stdout (channel file)
    pannier channel validate adt.toml other.xml [--config FILE]

A channel file is read as Mirth XML when its name ends in ``.xml`` (or its text starts with
``<``), else as TOML. ``validate`` checks each channel against the installed plugins as
``pannier config check`` does (``Engine.prepare``: connector types and properties, data
types, filters, transformers and scripts). Errors are one line on stderr naming the file and
the key, and exit status 2.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from pannier.extensions import CliCommand
from pannier.model.channel import Channel
from pannier.model.channel_file import ChannelFormatError, load_channel_file
from pannier.model.mirth_xml import (
    MirthXmlError,
    channel_from_xml,
    channel_to_toml,
    channel_to_xml,
)

PROG = "pannier channel"


class _Failure(Exception):
    """What to tell the user before exiting with status 2."""


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _is_xml(path: Path, text: str) -> bool:
    return path.suffix.lower() == ".xml" or text.lstrip().startswith("<")


def read_channel(path: str | Path) -> Channel:
    """A channel from a Mirth XML or a TOML channel file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Failure(f"{path}: cannot read channel file: {exc.strerror}") from None
    if _is_xml(path, data.decode("utf-8", errors="replace")):
        try:
            return channel_from_xml(data)  # bytes: the XML declaration names the encoding
        except MirthXmlError as exc:
            raise _Failure(f"{path}: {exc}") from None
    try:
        return load_channel_file(path)
    except ChannelFormatError as exc:
        raise _Failure(str(exc)) from None


# --- import --------------------------------------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    source = Path(args.file)
    target = Path(args.to) if args.to else source.with_suffix(".toml")
    try:
        channel = read_channel(source)
        if target.exists() and not args.force:
            raise _Failure(f"{target} exists; use --force to replace it")
        text = channel_to_toml(channel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise _Failure(f"{target}: cannot write: {exc.strerror}") from None
    except (_Failure, MirthXmlError) as exc:
        return _fail(str(exc))
    print(
        f"wrote {target}: channel {channel.name!r} ({channel.id}), "
        f"{len(channel.destinations)} destination(s)"
    )
    return 0


def _configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.xml", help="a Mirth channel export")
    parser.add_argument(
        "--to", metavar="FILE.toml", help="channel file to write (default: FILE with .toml)"
    )
    parser.add_argument("--force", action="store_true", help="replace --to if it exists")


# --- export --------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    try:
        channel = read_channel(args.file)
        if args.format == "xml":
            text = channel_to_xml(channel, export_data=not args.no_export_data)
        else:
            text = channel_to_toml(channel)
    except (_Failure, MirthXmlError) as exc:
        return _fail(str(exc))
    sys.stdout.write(text)
    return 0


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a channel file (TOML) or Mirth XML")
    parser.add_argument(
        "--format", choices=["xml", "toml"], default="xml", help="output format (default xml)"
    )
    parser.add_argument(
        "--no-export-data",
        action="store_true",
        help="leave out <exportData>, as Mirth stores a channel in its CHANNEL table",
    )


# --- validate ------------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    from pannier.cli.commands import config_path
    from pannier.config import ConfigError, load_config
    from pannier.engine import DeployError, Engine
    from pannier.plugins import PluginError

    try:
        engine = Engine(load_config(config_path(args)))
    except (ConfigError, PluginError, ChannelFormatError) as exc:
        return _fail(str(exc))
    status = 0
    for name in args.files:
        try:
            channel = read_channel(name)
            engine.prepare(copy.deepcopy(channel))  # prepare fills in defaults
        except _Failure as exc:
            status = _fail(str(exc))
            continue
        except (DeployError, PluginError, ChannelFormatError) as exc:
            status = _fail(f"{name}: {exc}")
            continue
        print(f"{name}: channel {channel.name!r} OK ({len(channel.destinations)} destination(s))")
    return status


def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", metavar="FILE", nargs="+", help="channel files (TOML or XML)")
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="configuration file naming the enabled plugins "
        "(default: $PANNIER_CONFIG, else ./pannier.toml if present)",
    )


# --- the command ---------------------------------------------------------------------------------

_ACTIONS: dict[str, tuple[str, Any, Any]] = {
    "import": ("Mirth channel XML → Pannier channel file", _configure_import, _import),
    "export": ("channel → Mirth XML or TOML on stdout", _configure_export, _export),
    "validate": ("check channels against the installed plugins", _configure_validate, _validate),
}


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, (summary, configure_action, _run) in _ACTIONS.items():
        sub = actions.add_parser(name, help=summary, description=summary)
        configure_action(sub)


def run(args: argparse.Namespace) -> int:
    action = _ACTIONS.get(getattr(args, "action", "") or "")
    if action is None:
        return _fail(f"expected one of: {', '.join(_ACTIONS)}")
    result: int = action[2](args)
    return result


def channel_command() -> CliCommand:
    return CliCommand(
        "channel",
        "import, export and validate channels (Mirth XML ⇄ TOML)",
        configure,
        run,
    )


__all__ = ["channel_command", "read_channel"]
