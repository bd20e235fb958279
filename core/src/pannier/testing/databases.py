"""Real database servers for tests: a pytest plugin that ships with ``pannier-core``.

Installed as the ``pytest11`` entry point ``pannier_databases``, so every test suite in an
environment where ``pannier-core`` is installed (the kernel's, each plugin's, a third-party
connector's) gets the same fixtures without copying them:

``mysql_url`` / ``postgres_url``
    the URL of a fresh, uniquely named database on a real MariaDB/MySQL or PostgreSQL server,
    dropped after the test;
``make_mysql_database`` / ``make_postgres_database``
    call for another fresh database (all dropped after the test);
``db_url``
    parametrised over SQLite (a file in ``tmp_path``), MariaDB/MySQL and PostgreSQL.

``PANNIER_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/``) and
``PANNIER_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
name the *servers*. When a server cannot be reached, its tests are skipped with a message naming
it — unless ``PANNIER_TEST_REQUIRE_SERVICES=1`` (set by CI), where they fail with that message,
so a CI run never passes by skipping. Tests using a server get the ``mysql`` / ``postgres``
marker, so ``-m "not mysql"`` deselects them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/"
POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

SERVERS = {
    "mysql": ("PANNIER_TEST_MYSQL_URL", MYSQL_DEFAULT, "MariaDB/MySQL"),
    "postgres": ("PANNIER_TEST_POSTGRES_URL", POSTGRES_DEFAULT, "PostgreSQL"),
}

MakeDatabase = Callable[[], str]

_reachable: dict[str, str | None] = {}  # kind -> None when reachable, else why not


def server_url(kind: str) -> URL:
    """The configured server URL for ``kind`` (``mysql`` or ``postgres``), without a database."""
    variable, default, _label = SERVERS[kind]
    return make_url(os.environ.get(variable) or default)


def require_service(message: str) -> None:
    """Skip the current test with ``message``, or fail it when CI requires every service."""
    if os.environ.get("PANNIER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _admin_engine(kind: str) -> Engine:
    return sa.create_engine(server_url(kind), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def check_server(kind: str) -> None:
    """Skip or fail (see :func:`require_service`) unless the ``kind`` server answers."""
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
        require_service(message)


def _create_database(kind: str) -> tuple[str, str]:
    name = f"pannier_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        engine.dispose()
    return name, server_url(kind).set(database=name).render_as_string(hide_password=False)


def _drop_database(kind: str, name: str) -> None:
    force = " WITH (FORCE)" if kind == "postgres" else ""
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    finally:
        engine.dispose()


def _database_factory(kind: str) -> Iterator[MakeDatabase]:
    check_server(kind)  # skip (or fail) at set-up, before the test body runs
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
    make: MakeDatabase = request.getfixturevalue(f"make_{request.param}_database")
    return make()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mysql: needs a MariaDB/MySQL server")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using a server fixture get its marker, so ``-m "not mysql"`` deselects them."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"mysql_url", "make_mysql_database"}:
            item.add_marker(pytest.mark.mysql)
        if names & {"postgres_url", "make_postgres_database"}:
            item.add_marker(pytest.mark.postgres)
