"""Database fixtures for store tests: a fresh, uniquely named database per test on real servers.

``PANNIER_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/``) and
``PANNIER_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
name the *servers*; each test gets its own database there, dropped afterwards. When a server is
unreachable its tests are skipped with a message naming it, unless
``PANNIER_TEST_REQUIRE_SERVICES=1`` (CI), where they fail with that message.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mirth-ddl"

MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/"
POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

SERVERS = {
    "mysql": ("PANNIER_TEST_MYSQL_URL", MYSQL_DEFAULT, "MariaDB/MySQL"),
    "postgres": ("PANNIER_TEST_POSTGRES_URL", POSTGRES_DEFAULT, "PostgreSQL"),
}

_reachable: dict[str, str | None] = {}  # kind -> None when reachable, else the error message


def server_url(kind: str) -> URL:
    variable, default, _label = SERVERS[kind]
    return make_url(os.environ.get(variable) or default)


def _unavailable(kind: str, message: str) -> None:
    if os.environ.get("PANNIER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _admin_engine(kind: str) -> Engine:
    return sa.create_engine(server_url(kind), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _check_server(kind: str) -> None:
    if kind not in _reachable:
        variable, _default, label = SERVERS[kind]
        shown = server_url(kind).render_as_string(hide_password=True)
        engine = _admin_engine(kind)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            _reachable[kind] = None
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _reachable[kind] = f"{label} server not reachable at {shown} (set {variable}): {first}"
        finally:
            engine.dispose()
    message = _reachable[kind]
    if message is not None:
        _unavailable(kind, message)


def _create_database(kind: str) -> tuple[str, str]:
    """Create a uniquely named database; return (its name, its URL)."""
    name = f"pannier_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        engine.dispose()
    url = server_url(kind).set(database=name)
    return name, url.render_as_string(hide_password=False)


def _drop_database(kind: str, name: str) -> None:
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            if kind == "postgres":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    finally:
        engine.dispose()


MakeDatabase = Callable[[], str]


def _database_factory(kind: str) -> Iterator[MakeDatabase]:
    _check_server(kind)  # skip (or fail) at set-up, before the test body runs
    created: list[str] = []

    def make() -> str:
        name, url = _create_database(kind)
        created.append(name)
        return url

    yield make
    for name in created:
        _drop_database(kind, name)


@pytest.fixture
def make_mysql_database() -> Iterator[MakeDatabase]:
    """Call it for the URL of another fresh MariaDB/MySQL database (dropped after the test)."""
    yield from _database_factory("mysql")


@pytest.fixture
def make_postgres_database() -> Iterator[MakeDatabase]:
    """Call it for the URL of another fresh PostgreSQL database (dropped after the test)."""
    yield from _database_factory("postgres")


@pytest.fixture
def mysql_url(make_mysql_database: MakeDatabase) -> str:
    """URL of a fresh, uniquely named MariaDB/MySQL database, dropped after the test."""
    return make_mysql_database()


@pytest.fixture
def postgres_url(make_postgres_database: MakeDatabase) -> str:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test."""
    return make_postgres_database()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each of SQLite, MariaDB/MySQL and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pannier.db'}"
    fixture = "make_mysql_database" if request.param == "mysql" else "make_postgres_database"
    make: MakeDatabase = request.getfixturevalue(fixture)
    return make()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using a server fixture get its marker, so ``-m "not mysql"`` deselects them."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"mysql_url", "make_mysql_database"}:
            item.add_marker(pytest.mark.mysql)
        if names & {"postgres_url", "make_postgres_database"}:
            item.add_marker(pytest.mark.postgres)


# --- Mirth's own DDL ------------------------------------------------------------------------


def sql_statements(text: str) -> list[str]:
    """Split an SQL script on ``;`` at line ends, dropping ``--`` comment lines."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def run_mirth_ddl(url: str, kind: str, channels: dict[int, str] | None = None) -> None:
    """Build a database as Mirth does (``kind``: mysql, postgres, or sqlite running the MySQL
    scripts): ``<kind>-core.sql`` (server tables and seed rows),
    ``<kind>-d-channels.sql``, then for each ``{local id: channel id}`` a ``D_CHANNELS`` row
    and ``<kind>-channel.sql`` with ``${localChannelId}`` replaced."""
    prefix = "postgres" if kind == "postgres" else "mysql"

    def script(name: str) -> str:
        text = (FIXTURES / f"{prefix}-{name}.sql").read_text()
        if kind == "sqlite":  # SQLite runs the MySQL DDL without these two MySQL words
            text = text.replace(" ENGINE=InnoDB", "").replace(" AUTO_INCREMENT", "")
        return text

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for name in ("core", "d-channels"):
                for statement in sql_statements(script(name)):
                    conn.exec_driver_sql(statement)
            channel_sql = script("channel")
            for local_id, channel_id in (channels or {}).items():
                conn.execute(
                    sa.text(
                        "INSERT INTO D_CHANNELS (LOCAL_CHANNEL_ID, CHANNEL_ID) VALUES (:n, :c)"
                    ),
                    {"n": local_id, "c": channel_id},
                )
                text = channel_sql.replace("${localChannelId}", str(local_id))
                for statement in sql_statements(text):
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
