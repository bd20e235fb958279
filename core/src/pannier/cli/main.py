"""Entry point of the ``pannier`` command: every sub-command comes from a plugin's
``pannier_register_commands`` (the kernel's own ``run``, ``plugins`` and ``config`` too)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pannier import __version__
from pannier.plugins import PluginError, build_registry, load_plugins, new_plugin_manager


def build_parser() -> argparse.ArgumentParser:
    pm = new_plugin_manager()
    load_plugins(pm, quiet=True)
    registry = build_registry(pm)
    parser = argparse.ArgumentParser(
        prog="pannier", description="Pannier healthcare integration engine"
    )
    parser.add_argument("--version", action="version", version=f"pannier {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(registry.commands):
        command, plugin = registry.commands[name]
        help_text = command.help if plugin == "core" else f"{command.help} [{plugin}]"
        command_parser = sub.add_parser(name, help=help_text, description=command.help)
        command.configure(command_parser)
        command_parser.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except PluginError as exc:
        print(f"pannier: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
