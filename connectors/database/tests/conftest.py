"""Fixtures for the database connectors' tests: fresh databases on real servers, a recording
dispatcher, and connector setups.

``PANNIER_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/``) and
``PANNIER_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
name the *servers*; each test gets its own database there, dropped afterwards. When a server is
unreachable its tests are skipped with a message naming it, unless
``PANNIER_TEST_REQUIRE_SERVICES=1`` (CI), where they fail with that message. (The same logic as
``tests/store/conftest.py``; test modules cannot import a conftest under
``--import-mode=importlib``, so helpers are fixtures.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from pannier import ConnectorSetup, DispatchResult, RawMessage, Response, Status
from sqlalchemy.engine import URL, Engine, make_url

SERVERS = {
    "mysql": ("PANNIER_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/", "MariaDB/MySQL"),
    "postgres": (
        "PANNIER_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        "PostgreSQL",
    ),
}

_reachable: dict[str, str | None] = {}  # kind -> None when reachable, else the error message


def server_url(kind: str) -> URL:
    variable, default, _label = SERVERS[kind]
    return make_url(os.environ.get(variable) or default)


def _unavailable(message: str) -> None:
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
        _unavailable(message)


def _database(kind: str) -> Iterator[str]:
    """A uniquely named database on the server (its URL), dropped afterwards."""
    _check_server(kind)
    name = f"pannier_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        engine.dispose()
    yield server_url(kind).set(database=name).render_as_string(hide_password=False)
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    finally:
        engine.dispose()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """URL of a fresh, uniquely named MariaDB/MySQL database, dropped after the test."""
    yield from _database("mysql")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test."""
    yield from _database("postgres")


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
        return f"sqlite:///{tmp_path / 'data.db'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


class RecordingDispatcher:
    """Records every message; ``fail(raw)`` may return an exception to raise instead."""

    def __init__(self, fail: Callable[[RawMessage], BaseException | None] | None = None) -> None:
        self.messages: list[RawMessage] = []
        self.fail = fail

    async def dispatch(self, raw: RawMessage) -> DispatchResult:
        await trio.sleep(0)
        if self.fail is not None:
            error = self.fail(raw)
            if error is not None:
                raise error
        self.messages.append(raw)
        return DispatchResult(len(self.messages), Response(Status.SENT, "ok"))

    @property
    def contents(self) -> list[str]:
        return [str(m.content) for m in self.messages]


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def recording_dispatcher() -> type[RecordingDispatcher]:
    return RecordingDispatcher


MakeSetup = Callable[..., ConnectorSetup]


@pytest.fixture
def make_setup(tmp_path: Path) -> MakeSetup:
    """``make_setup(defaults, should_poll=..., states=[...], **properties)``."""

    def make(
        defaults: dict[str, Any],
        *,
        should_poll: Callable[[], bool] = lambda: True,
        states: list[str] | None = None,
        **properties: Any,
    ) -> ConnectorSetup:
        sink = states if states is not None else []
        return ConnectorSetup(
            channel_id="c0ffee00-0000-0000-0000-000000000001",
            channel_name="database test",
            metadata_id=0,
            name="Source",
            properties={**defaults, **properties},
            report_state=lambda state, details: sink.append(state),
            base_directory=str(tmp_path),
            should_poll=should_poll,
        )

    return make


@pytest.fixture
def sql() -> Callable[..., list[tuple[Any, ...]]]:
    """``sql(url, statement, params=None)``: run one statement (committed); rows if any."""

    def run(url: str, statement: str, params: dict[str, Any] | None = None) -> list[tuple]:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), params or {})
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    return run
