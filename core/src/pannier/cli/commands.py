"""The kernel's own commands: ``run``, ``plugins``, ``config check``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from pannier.cli.channel_commands import channel_command
from pannier.cli.convert import convert_command
from pannier.config import Config, ConfigError, load_config
from pannier.engine import Engine
from pannier.extensions import CliCommand
from pannier.model.channel_file import ChannelFormatError
from pannier.plugins import (
    PluginError,
    describe_contributions,
    load_plugins,
    new_plugin_manager,
)
from pannier.workers import (
    WORKER_ENV,
    Worker,
    current_worker,
    pin_to_cpu,
    report_ready,
)

log = logging.getLogger("pannier.cli")


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="configuration file (default: $PANNIER_CONFIG, else ./pannier.toml if present)",
    )


def config_path(args: argparse.Namespace) -> str | None:
    if args.config:
        return str(args.config)
    if os.environ.get("PANNIER_CONFIG"):
        return os.environ["PANNIER_CONFIG"]
    return "pannier.toml" if Path("pannier.toml").exists() else None


def fail(message: str) -> int:
    print(f"pannier: error: {message}", file=sys.stderr)
    return 2


def _configure_logging(config: Config, worker: Worker | None = None) -> None:
    """Log lines of a node's workers carry ``[worker N]`` so one can tell them apart."""
    who = f"[worker {worker.index}] " if worker is not None and worker.count > 1 else ""
    logging.basicConfig(
        level=config["logging.level"],
        format=f"%(asctime)s %(levelname)-7s {who}%(name)s: %(message)s",
    )


# --- run -----------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.workers is not None:
        environ["PANNIER_SERVER_WORKERS"] = str(args.workers)
    try:
        config = load_config(config_path(args), environ)
        worker = current_worker()
        _configure_logging(config, worker)
        if config["server.workers"] > 1 and WORKER_ENV not in os.environ:
            return _supervise(config)
        cpu = pin_to_cpu(config["server.cpu_affinity"], worker)
        if cpu is not None:
            log.info("running on CPU %d (server.cpu_affinity)", cpu)
        engine = Engine(config, serve_api=config["api.enabled"], worker=worker)
    except (ConfigError, PluginError, ChannelFormatError) as exc:
        return fail(str(exc))

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, engine)
            await nursery.start(engine.run)
            for deployed in engine.channels.values():
                log.info("channel %r listening: %s", deployed.channel.name, deployed.bound)
            report_ready()
            await engine.stopped.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(serve)
    except (ConfigError, ChannelFormatError) as exc:
        return fail(str(exc))
    except BaseExceptionGroup as group:
        # Start-up errors raised inside the engine's nurseries arrive grouped.
        matched, rest = group.split((ConfigError, ChannelFormatError))
        if matched is None or rest is not None:
            raise
        return fail("; ".join(str(exc) for exc in _leaves(matched)))
    return 1 if engine.deploy_errors and not engine.channels else 0


def _supervise(config: Config) -> int:
    """``server.workers`` > 1: become the supervisor of that many engines of this
    configuration (:mod:`pannier.supervisor`). The process replaces itself (same pid, for
    systemd and the like) with one that imports only the standard library."""
    import pannier.supervisor

    argv = [sys.executable, "-m", "pannier.cli.main", "run"]
    if config.path is not None:
        argv += ["--config", str(config.path)]
    count = str(config["server.workers"])
    script = pannier.supervisor.__file__
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the script's folder (pannier's own modules) is not put on sys.path.
    os.execv(
        sys.executable, [sys.executable, "-P", script, count, config["logging.level"], "--", *argv]
    )
    return 1  # not reached


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def _stop_on_signal(engine: Engine) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: draining and stopping", signal.Signals(signum).name)
            engine.request_stop()
            break


def _configure_run(parser: argparse.ArgumentParser) -> None:
    _add_config_argument(parser)
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="engine processes on this node, sharing the listening ports "
        "(default: server.workers, 1)",
    )


# --- plugins -------------------------------------------------------------------------------------


def _plugins(args: argparse.Namespace) -> int:
    pm = new_plugin_manager()
    try:
        infos = load_plugins(pm)
    except PluginError as exc:
        return fail(str(exc))
    describe_contributions(pm, infos)
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return 0
    for info in infos:
        status = f"  BROKEN: {info.error}" if info.error else ""
        print(f"{info.name}  ({info.distribution} {info.version}){status}")
        for label, items in info.contributes.items():
            print(f"    {label}: {', '.join(items)}")
    return 0


def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


# --- config check --------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> int:
    from pannier.engine import DeployError

    if args.action != "check":
        return fail(f"unknown config action {args.action!r}")
    try:
        config = load_config(config_path(args))
        engine = Engine(config)
        channels = engine.channels_from_config()
        for channel in channels:
            engine.prepare(channel)
    except (ConfigError, PluginError, ChannelFormatError, DeployError) as exc:
        return fail(str(exc))
    if args.show:
        print(json.dumps(config.redacted(), indent=2, default=str))
    source = config.path or "defaults and environment"
    print(
        f"configuration OK ({source}): {len(channels)} channel(s), database "
        f"{config.redacted()['database']['url']}, server id {engine.server_id}"
    )
    return 0


def _configure_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["check"],
        help="check: validate the configuration, "
        "plugins and channel files without starting anything",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="also print the effective configuration (secrets hidden)",
    )
    _add_config_argument(parser)


def core_commands() -> list[CliCommand]:
    return [
        CliCommand(
            "run", "start the engine and deploy the configured channels", _configure_run, _run
        ),
        CliCommand(
            "plugins",
            "list installed plugins and what each contributes",
            _configure_plugins,
            _plugins,
        ),
        CliCommand(
            "config", "check the configuration (pannier config check)", _configure_config, _config
        ),
        convert_command(),
        channel_command(),
    ]
