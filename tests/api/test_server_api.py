"""Server routes: id, version, status, configuration map, global scripts, tags, metadata."""

from __future__ import annotations

import sqlalchemy as sa
from pannier import __version__

from tests.api.conftest import CHANNEL_A, Api


async def test_id_version_status(api: Api) -> None:
    async with api.client() as client:
        server_id = await client.get("/api/server/id")
        version = await client.get("/api/server/version")
        status = await client.get("/api/server/status")
    assert server_id.json() == api.engine.server_id
    assert version.json() == __version__
    assert status.json() == 0


async def test_configuration_map_goes_through_the_map_backend(api: Api) -> None:
    async with api.client() as client:
        put = await client.put(
            "/api/server/configurationMap",
            json={"host": {"value": "10.0.0.1", "comment": "lab"}, "port": "6661"},
        )
        got = await client.get("/api/server/configurationMap")
        bad = await client.put("/api/server/configurationMap", json={"k": {"value": [1]}})
        not_object = await client.put("/api/server/configurationMap", json=[1, 2])
    assert put.status_code == 204
    assert got.json() == {
        "host": {"value": "10.0.0.1", "comment": ""},
        "port": {"value": "6661", "comment": ""},
    }
    assert await api.engine.map_backend.items("configuration") == {
        "host": "10.0.0.1",
        "port": "6661",
    }
    assert bad.status_code == 400 and "k" in bad.json()["error"]
    assert not_object.status_code == 400


async def test_global_scripts_are_mirth_script_rows(api: Api) -> None:
    async with api.client() as client:
        put = await client.put("/api/server/globalScripts", json={"Deploy": "// hello"})
        got = await client.get("/api/server/globalScripts")
        bad = await client.put("/api/server/globalScripts", json={"Sometimes": "x"})
    assert put.status_code == 204
    assert got.json()["Deploy"] == "// hello"
    assert got.json()["Undeploy"] == ""
    assert bad.status_code == 400 and "Sometimes" in bad.json()["error"]
    store = api.engine.store
    assert store is not None
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT SCRIPT FROM SCRIPT WHERE GROUP_ID = 'Global' AND ID = 'Deploy'")
        ).scalar()
    assert row == "// hello"


async def test_channel_tags_and_metadata(api: Api) -> None:
    tags = [{"id": "t1", "name": "lab", "channelIds": [CHANNEL_A], "backgroundColor": "#fff"}]
    async with api.client() as client:
        assert (await client.put("/api/server/channelTags", json=tags)).status_code == 204
        got_tags = (await client.get("/api/server/channelTags")).json()
        bad_tags = await client.put("/api/server/channelTags", json=[{"channelIds": []}])
        meta = await client.put(
            "/api/server/channelMetadata", json={CHANNEL_A: {"pruningSettings": {"days": 7}}}
        )
        got_meta = (await client.get("/api/server/channelMetadata")).json()
        bad_meta = await client.put(
            "/api/server/channelMetadata", json={CHANNEL_A: {"enabled": "yes"}}
        )
        changes = (await client.get("/api/events", params={"name": "Set channel tags"})).json()
    assert got_tags == tags
    assert bad_tags.status_code == 400
    assert meta.status_code == 204
    assert got_meta[CHANNEL_A]["pruningSettings"] == {"days": 7}
    assert got_meta[CHANNEL_A]["enabled"] is True
    assert bad_meta.status_code == 400
    assert [e["name"] for e in changes["events"]] == ["Set channel tags"]


async def test_events_paging_is_checked(api: Api) -> None:
    async with api.client() as client:
        bad = await client.get("/api/events", params={"limit": "lots"})
        too_many = await client.get("/api/events", params={"limit": 5000})
    assert bad.status_code == 400 and "limit" in bad.json()["error"]
    assert too_many.status_code == 400
