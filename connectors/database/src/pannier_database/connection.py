"""Database URLs and engines for both database connectors.

The ``url`` property is a SQLAlchemy URL (``mysql+pymysql://host:3306/db``). A Mirth JDBC URL
is accepted too and mapped where the mapping is plain: ``jdbc:mysql://`` and ``jdbc:mariadb://``
(to ``mysql+pymysql``), ``jdbc:postgresql://`` (to ``postgresql+psycopg``) and ``jdbc:sqlite:``.
The ``username`` and ``password`` properties, when set, replace the URL's. A relative SQLite
path is resolved against the configuration file's folder, like every other relative path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from pannier.properties import PropertyError, get_str
from sqlalchemy.engine import URL, make_url

LOG = logging.getLogger("pannier.database")

_JDBC_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgresql": "postgresql+psycopg",
}
_EXPECTED = (
    "a SQLAlchemy URL such as mysql+pymysql://host:3306/db, postgresql+psycopg://host/db or "
    "sqlite:///file.db, or a JDBC URL jdbc:mysql://, jdbc:mariadb://, jdbc:postgresql:// or "
    "jdbc:sqlite:"
)


def _from_jdbc(text: str, who: str) -> URL:
    """``jdbc:mysql://host:3306/db?user=a`` → ``mysql+pymysql://a@host:3306/db``."""
    sub, _, rest = text[len("jdbc:") :].partition(":")
    sub = sub.lower()
    if sub == "sqlite":
        return make_url("sqlite://" if rest in ("", ":memory:") else f"sqlite:///{rest}")
    driver = _JDBC_DRIVERS.get(sub)
    if driver is None or not rest.startswith("//"):
        raise PropertyError(f"{who}: url = {text!r} cannot be mapped; expected {_EXPECTED}")
    location, _, query = rest[2:].partition("?")
    authority, _, database = location.partition("/")
    host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if "," in host or not host:
        raise PropertyError(
            f"{who}: url = {text!r}: expected one host (jdbc:{sub}://host:port/database)"
        )
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        raise PropertyError(f"{who}: url = {text!r}: port {port_text!r} is not a number") from None
    options = dict(parse_qsl(query.replace(";", "&")))
    username = options.pop("user", None)
    password = options.pop("password", None)
    if options:
        LOG.warning(
            "%s: JDBC URL options %s are driver specific and were dropped; use a SQLAlchemy URL "
            "to pass driver options",
            who,
            ", ".join(sorted(options)),
        )
    return URL.create(
        driver,
        username=username,
        password=password,
        host=host,
        port=port,
        database=database or None,
    )


def database_url(props: Mapping[str, Any], base_directory: str, who: str) -> URL:
    """The SQLAlchemy URL the connector's properties name; ``PropertyError`` when there is none
    or it cannot be used."""
    text = get_str(props, "url", "").strip()
    if not text:
        raise PropertyError(f"{who}: url is required ({_EXPECTED})")
    if text.lower().startswith("jdbc:"):
        url = _from_jdbc(text, who)
    else:
        try:
            url = make_url(text)
        except sa.exc.ArgumentError:
            raise PropertyError(
                f"{who}: url = {text!r} is not valid; expected {_EXPECTED}"
            ) from None
    try:
        url.get_dialect()
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise PropertyError(f"{who}: url = {text!r}: no such database dialect ({exc})") from None
    username = get_str(props, "username", "")
    password = get_str(props, "password", "")
    if username:
        url = url.set(username=username)
    if password:
        url = url.set(password=password)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        is_path = database not in ("", ":memory:") and not database.startswith("file:")
        if is_path and not Path(database).is_absolute():
            url = url.set(database=str(Path(base_directory) / database))
    return url


def create_engine(url: URL, *, keep_open: bool, connect_timeout: float) -> sa.Engine:
    """A pooled engine (``keep_open``) or one that connects for each use (Mirth's
    ``keepConnectionOpen = false``). Connections are checked before use, so a database that
    restarted costs one failed ping, not a failed message."""
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    seconds = max(1, round(connect_timeout))
    if backend in ("mysql", "mariadb", "postgresql"):
        connect_args["connect_timeout"] = seconds
    options: dict[str, Any] = {"pool_pre_ping": True, "connect_args": connect_args}
    if not keep_open:
        options["poolclass"] = sa.NullPool
    return sa.create_engine(url, **options)


def shown(url: URL) -> str:
    """The URL for logs and messages, password hidden."""
    return url.render_as_string(hide_password=True)


def driver_message(exc: BaseException) -> str:
    """The database driver's own message for a SQLAlchemy error (its ``orig``)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip() or type(original).__name__
