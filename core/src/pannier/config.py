"""Engine configuration: ``pannier.toml``, environment overrides and Mirth-style aliases.

Precedence, highest first: ``PANNIER_<SECTION>_<KEY>`` environment variables, the aliases
operators of other Mirth ports already use (``MIRTH_SERVER_ID``, ``DB_HOST``...), the config
file, the defaults below. Every value is checked at load: a wrong one stops start-up with the
key, the value, where it came from and what was expected.

String values may be indirect: ``"$env:NAME"`` reads an environment variable and
``"$file:/path"`` a file's contents (for secrets). Secrets are redacted whenever configuration
is shown.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa


class ConfigError(ValueError):
    """Invalid configuration; the text names the key, the value and what was expected."""


@dataclass(frozen=True)
class Setting:
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None
    """Returns what was expected when the value is wrong, else None."""


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "a port number from 0 to 65535"


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "a whole number of at least 1"


def _cpu_list(value: Any) -> str | None:
    text = str(value).strip()
    if text in ("", "auto") or all(part.strip().isdigit() for part in text.split(",")):
        return None
    return 'empty, "auto", or CPU numbers separated by commas such as "0,1"'


def _database_url(value: Any) -> str | None:
    try:
        sa.engine.make_url(value)
    except sa.exc.ArgumentError:
        return (
            "an SQLAlchemy URL such as sqlite:///var/pannier.db or "
            "mysql+pymysql://user:password@host/mirthdb"
        )
    return None


SCHEMA: dict[str, dict[str, Setting]] = {
    "server": {
        "id": Setting(
            "",
            "this engine's server id; generated once and kept in <data_dir>/server.id when empty",
        ),
        "data_dir": Setting(
            "var",
            "directory for the server id file and the embedded "
            "database; relative to the config file",
        ),
        "workers": Setting(
            1,
            "engine processes on this node (pannier run --workers): listeners share their "
            "ports, each process has its own server id; worker 0 serves the API and polls",
            check=_positive,
        ),
        "cpu_affinity": Setting(
            "",
            "pin each engine process to one CPU: empty (the default) leaves scheduling to the "
            "OS; auto puts worker i on the i-th CPU the process may use; a list such as "
            '"2,3" puts worker i on the i-th CPU listed',
            check=_cpu_list,
        ),
        "shadow_mode": Setting(
            False,
            "run without sending to destinations (takeover trials); "
            "accepted and checked now, acted on once the shadow plugin "
            "lands",
        ),
    },
    "database": {
        "url": Setting(
            "sqlite:///pannier.db",
            "SQLAlchemy URL of the message store; a relative SQLite path is inside data_dir",
            check=_database_url,
        ),
        "mode": Setting(
            "standalone",
            "standalone creates Mirth's schema and seed rows when "
            "missing (safe when several nodes start at once); takeover uses an "
            "existing Mirth 4.5.x/4.6.0 database, checks SCHEMA_INFO and creates "
            "only missing per-channel tables; auto is takeover when SCHEMA_INFO "
            "exists, else standalone (single instance only)",
            choices=("standalone", "takeover", "auto"),
        ),
        "pool_size": Setting(
            8,
            "database connections kept open (the pool may open a few more under load), and "
            "worker threads for reads (API, recovery) at most; the store's writers (one on "
            "SQLite, two on a server) work in threads of their own",
            check=_positive,
        ),
        "async_batches": Setting(
            True,
            "MariaDB/MySQL and PostgreSQL: the store sends each batch from the event loop on "
            "its connection's own socket, without a worker thread (MariaDB: not over TLS or "
            "compression, which take the driver); false: always through the driver in a worker "
            "thread",
        ),
        "sequence_allocator": Setting("block", "message id allocator, by plugin name"),
        "sequence_block_size": Setting(
            100, "ids reserved per locked read by the block allocator", check=_positive
        ),
    },
    "cluster": {
        "enabled": Setting(
            False,
            "several engines share one database; accepted and checked "
            "now, acted on once cluster services land",
        ),
        "map_backend": Setting("memory", "backend of the global/configuration maps, by name"),
        "bus": Setting("local", "event bus between engines, by name"),
        "redis_url": Setting("", "Redis URL for plugins that use Redis"),
    },
    "api": {
        "enabled": Setting(True, "serve the HTTP API from `pannier run` (embedded engines opt in)"),
        "host": Setting("127.0.0.1", "address the HTTP API listens on"),
        "port": Setting(8080, "port of the HTTP API; 0 picks a free port", check=_port),
        "tls_cert": Setting("", "PEM certificate file; with tls_key the API is served over HTTPS"),
        "tls_key": Setting("", "PEM private key file of tls_cert"),
        "max_request_bytes": Setting(
            16 * 1024 * 1024, "largest request body accepted (413 above)", check=_positive
        ),
        "max_page_size": Setting(
            1000, "most messages one message search may return (its limit)", check=_positive
        ),
        "cors_origins": Setting(
            [], "origins allowed to call the API from a browser; empty: no CORS headers"
        ),
        "require_requested_with": Setting(
            True, "refuse requests without an X-Requested-With header (400), as Mirth"
        ),
        "session_timeout_seconds": Setting(
            1800, "idle time after which a login session ends", check=_positive
        ),
        "login_max_failures": Setting(
            5, "failed logins in a row that lock a user name out", check=_positive
        ),
        "login_lockout_seconds": Setting(
            300, "how long a locked-out user name stays locked", check=_positive
        ),
        "login_rate_per_minute": Setting(
            30,
            "login attempts one client address may make per minute (429 above)",
            check=_positive,
        ),
    },
    "channels": {
        "paths": Setting(
            ["channels/*.toml"],
            "channel files to deploy at start (glob patterns, relative to the config file)",
        ),
    },
    "engine": {
        "drain_seconds": Setting(30.0, "how long shutdown waits for in-flight messages"),
    },
    "scripts": {
        "deploy": Setting(
            "",
            "global deploy script, run once at start before channels deploy: Python code, "
            "or a .py file relative to the config file",
        ),
        "undeploy": Setting(
            "", "global undeploy script, run once at stop after channels drain (code or .py file)"
        ),
        "preprocessor": Setting(
            "",
            "global preprocessor, run on every message before the channel's own; a returned "
            "string replaces the message (code or .py file)",
        ),
        "postprocessor": Setting(
            "",
            "global postprocessor, run after the channel's own, which it sees as `response`; "
            "a returned value other than None is the postprocessor response (code or .py file)",
        ),
        "language": Setting("python", "script engine of the global scripts, by name"),
    },
    "logging": {
        "level": Setting(
            "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        ),
    },
    "plugins": {
        "enabled": Setting([], "allow-list of plugin names to load; empty loads all installed"),
        "required": Setting(
            [],
            "plugins that must load, as requirements such as "
            "'pannier-mllp>=0.1'; start-up stops without them",
        ),
    },
}

#: Environment names other Mirth ports use, mapped to Pannier keys.
ALIASES = {
    "MIRTH_SERVER_ID": "server.id",
    "MIRTH_MODE": "database.mode",
    "MIRTH_MAP_BACKEND": "cluster.map_backend",
    "MIRTH_SEQUENCE_BLOCK_SIZE": "database.sequence_block_size",
    "MIRTH_SHADOW_MODE": "server.shadow_mode",
    "MIRTH_CLUSTER_ENABLED": "cluster.enabled",
    "REDIS_URL": "cluster.redis_url",
}

#: DB_* variables compose ``database.url`` when no URL is given in the environment.
DB_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "sqlite": "sqlite",
}

_SECRET_KEY = re.compile(r"(password|secret|token|key)$", re.IGNORECASE)


class Config:
    """Validated configuration: ``config["database.url"]``, plugin sections by name."""

    def __init__(
        self,
        values: dict[str, dict[str, Any]],
        origins: dict[str, str],
        base_dir: Path,
        path: Path | None,
    ) -> None:
        self._values = values
        self._origins = origins
        self.base_dir = base_dir
        self.path = path

    def __getitem__(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        return self._values[section][key]

    def origin(self, dotted: str) -> str:
        return self._origins.get(dotted, "default")

    def section(self, name: str) -> dict[str, Any]:
        return dict(self._values.get(name, {}))

    def plugin_settings(self, name: str) -> dict[str, Any]:
        return dict(self._values.get("plugins", {}).get(name, {}) or {})

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / str(self["server.data_dir"])).resolve()

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path placed in the data directory."""
        url = sa.engine.make_url(self["database.url"])
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(url.database)
            if not path.is_absolute():
                url = url.set(database=str(self.data_dir / path))
        return url.render_as_string(hide_password=False)

    def resolve_path(self, value: str) -> Path:
        return (self.base_dir / value).resolve()

    def check_plugin_sections(self, declared: Mapping[str, Mapping[str, Any]]) -> None:
        """Validate ``[plugins.<name>]`` sections against what plugins declared."""
        plugins = self._values.get("plugins", {})
        for name, section in plugins.items():
            if name in SCHEMA["plugins"]:
                continue
            if name not in declared:
                raise ConfigError(
                    f"[plugins.{name}]: no installed plugin declares settings "
                    f"named {name!r}; plugins with settings: "
                    f"{', '.join(sorted(declared)) or 'none'}"
                )
            defaults = declared[name]
            merged = dict(defaults)
            for key, value in (section or {}).items():
                where = f"plugins.{name}.{key}"
                if key not in defaults:
                    raise ConfigError(
                        f"{where}: unknown key; {name} accepts: "
                        f"{', '.join(sorted(defaults)) or 'nothing'}"
                    )
                merged[key] = _coerce(where, value, defaults[key], self._origins.get(where))
            plugins[name] = merged
        for name, defaults in declared.items():
            plugins.setdefault(name, dict(defaults))

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The configuration with secrets hidden, for display."""
        shown: dict[str, dict[str, Any]] = {}
        for section, values in self._values.items():
            shown[section] = {}
            for key, value in values.items():
                shown[section][key] = _redact(key, value)
        return shown


def _redact(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact(k, v) for k, v in value.items()}
    if isinstance(value, str) and value and _SECRET_KEY.search(key):
        return "********"
    if isinstance(value, str) and "://" in value:
        try:
            return sa.engine.make_url(value).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return value
    return value


def _type_name(default: Any) -> str:
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        list: "a list of strings",
    }[type(default)]


def _coerce(where: str, value: Any, default: Any, origin: str | None) -> Any:
    """Check ``value`` against the type of ``default``; strings from the environment are
    parsed first."""
    source = f" (from {origin})" if origin and origin != "default" else ""
    expected = type(default)
    if isinstance(value, str) and origin and origin.startswith("environment"):
        text = value.strip()
        if expected is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif expected is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif expected is float:
            try:
                return float(text)
            except ValueError:
                pass
        elif expected is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        else:
            return value
        raise ConfigError(f"{where} = {value!r}{source}: expected {_type_name(default)}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where} = {value!r}{source}: expected {_type_name(default)}")


def _indirect(where: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith("$env:"):
        name = value[5:]
        if name not in os.environ:
            raise ConfigError(f"{where} = {value!r}: environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("$file:"):
        path = Path(value[6:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where} = {value!r}: cannot read {path}: {exc.strerror}") from None
    return value


def _env_key(section: str, key: str) -> str:
    return f"PANNIER_{section}_{key}".upper()


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate configuration from ``path`` (optional) and the environment."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    config_path: Path | None = None
    if path is not None:
        config_path = Path(path).resolve()
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    base_dir = config_path.parent if config_path else Path.cwd()
    label = str(path) if path else "config"

    values: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for section, value in data.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"{label}: unknown section [{section}]; expected one of: "
                f"{', '.join(sorted(SCHEMA))}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: {section} must be a table ([{section}])")
    for section, settings in SCHEMA.items():
        given = dict(data.get(section, {}))
        values[section] = {}
        for key, setting in settings.items():
            values[section][key] = setting.default
        for key, value in given.items():
            if key not in settings:
                if section == "plugins" and isinstance(value, dict):
                    values[section][key] = value
                    for sub in value:
                        origins[f"plugins.{key}.{sub}"] = label
                    continue
                raise ConfigError(
                    f"{section}.{key}: unknown key in {label}; [{section}] "
                    f"accepts: {', '.join(sorted(settings))}"
                )
            values[section][key] = value
            origins[f"{section}.{key}"] = label

    # Aliases first, so that PANNIER_* (applied after) wins over them.
    for name, dotted in ALIASES.items():
        if environ.get(name, "") != "":
            section, _, key = dotted.partition(".")
            values[section][key] = environ[name]
            origins[dotted] = f"environment {name}"
    db_url = _url_from_db_variables(environ)
    if db_url:
        values["database"]["url"] = db_url
        origins["database.url"] = "environment DB_*"
    for section, settings in SCHEMA.items():
        for key in settings:
            name = _env_key(section, key)
            if environ.get(name, "") != "":
                values[section][key] = environ[name]
                origins[f"{section}.{key}"] = f"environment {name}"
    for name, value in environ.items():
        match = re.fullmatch(r"PANNIER_PLUGINS_([A-Z0-9]+)_([A-Z0-9_]+)", name)
        if match and value != "":
            plugin, key = match.group(1).lower(), match.group(2).lower()
            if plugin in SCHEMA["plugins"]:
                continue
            values["plugins"].setdefault(plugin, {})[key] = value
            origins[f"plugins.{plugin}.{key}"] = f"environment {name}"

    for section, settings in SCHEMA.items():
        for key, setting in settings.items():
            where = f"{section}.{key}"
            value = _indirect(where, values[section][key])
            value = _coerce(where, value, setting.default, origins.get(where))
            origin = origins.get(where)
            source = f" (from {origin})" if origin else ""
            if setting.choices and value not in setting.choices:
                raise ConfigError(
                    f"{where} = {value!r}{source}: expected one of {', '.join(setting.choices)}"
                )
            if setting.check is not None:
                problem = setting.check(value)
                if problem:
                    raise ConfigError(f"{where} = {value!r}{source}: expected {problem}")
            values[section][key] = value
    return Config(values, origins, base_dir, config_path)


def _url_from_db_variables(environ: Mapping[str, str]) -> str | None:
    if not environ.get("DB_HOST") and not environ.get("DB_TYPE"):
        return None
    kind = environ.get("DB_TYPE", "mysql").lower()
    driver = DB_DRIVERS.get(kind)
    if driver is None:
        raise ConfigError(
            f"DB_TYPE = {kind!r} (from environment DB_TYPE): expected one of "
            f"{', '.join(sorted(DB_DRIVERS))}"
        )
    if driver == "sqlite":
        return f"sqlite:///{environ.get('DB_NAME', 'pannier.db')}"
    user = quote(environ.get("DB_USER", ""), safe="")
    password = quote(environ.get("DB_PASSWORD", ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = environ.get("DB_HOST", "127.0.0.1")
    port = f":{environ['DB_PORT']}" if environ.get("DB_PORT") else ""
    return f"{driver}://{auth}{host}{port}/{environ.get('DB_NAME', 'mirthdb')}"
