"""An engine serving the HTTP API on a free port, and HTTP clients for it (real HTTP)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from pannier.api import accounts
from pannier.api.auth import hash_password
from pannier.engine import Engine
from pannier.testing.engine import engine_config

HEADERS = {"X-Requested-With": "pannier-tests"}
ADMIN = ("admin", "admin")

#: One PBKDF2 hash reused for every test user (600 000 rounds each time is slow).
USER_PASSWORD = "s3cret-pass"
_HASHES: dict[str, str] = {}


def channel_toml(channel_id: str, name: str, initial: str = "STARTED") -> str:
    """A channel other channels (or tests, through engine.route) send to; it keeps the
    message and writes it nowhere (Channel Writer to "none")."""
    return f'''
id = "{channel_id}"
name = "{name}"
[properties]
initialState = "{initial}"
[source]
transportName = "Channel Reader"
inboundDataType = "RAW"
[[destinations]]
metaDataId = 1
name = "Nowhere"
transportName = "Channel Writer"
inboundDataType = "RAW"
outboundDataType = "RAW"
[destinations.properties]
channelId = "none"
'''


CHANNEL_A = "aaaaaaaa-0000-4000-8000-000000000001"
CHANNEL_B = "bbbbbbbb-0000-4000-8000-000000000002"


@dataclass
class Api:
    engine: Engine
    url: str
    tmp_path: Path

    def client(self, auth: tuple[str, str] | None = ADMIN, **kwargs: object) -> httpx.AsyncClient:
        headers = dict(HEADERS)
        headers.update(kwargs.pop("headers", {}) or {})  # type: ignore[arg-type]
        kwargs.setdefault("timeout", 60)
        return httpx.AsyncClient(
            base_url=self.url,
            auth=auth,
            headers=headers,
            **kwargs,  # type: ignore[arg-type]
        )

    async def add_user(self, username: str, role: str) -> tuple[str, str]:
        """A user with ``role`` and :data:`USER_PASSWORD`, written straight to the database."""
        if "hash" not in _HASHES:
            _HASHES["hash"] = await trio.to_thread.run_sync(hash_password, USER_PASSWORD)
        store = self.engine.store
        assert store is not None
        await store.run_sync(accounts.create_user, store, username, _HASHES["hash"], role, {})
        return username, USER_PASSWORD


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def start_api(nursery: trio.Nursery, tmp_path: Path) -> StartApi:
    async def start(
        channels: Sequence[str] = (),
        *,
        config: str = "",
        plugins: Sequence[object] = (),
        within: trio.Nursery | None = None,
    ) -> Api:
        settings = engine_config(
            tmp_path, channels, f"[engine]\ndrain_seconds = 5.0\n[api]\nport = 0\n{config}"
        )
        engine = Engine(settings, extra_plugins=plugins, serve_api=True)
        await (within or nursery).start(engine.run)
        assert engine.api_address is not None
        return Api(engine, engine.api_address, tmp_path)

    return start


@pytest.fixture
async def api(start_api: StartApi) -> AsyncIterator[Api]:
    """An engine with two deployed channels (A and B)."""
    yield await start_api([channel_toml(CHANNEL_A, "Channel A"), channel_toml(CHANNEL_B, "B")])


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
