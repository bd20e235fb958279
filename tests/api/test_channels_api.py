"""Channel routes through real HTTP: definitions, deployment and state, dashboard, statistics."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import trio
from pannier.connectors import RawMessage
from pannier.model.mirth_xml import channel_from_xml

from tests.api.conftest import CHANNEL_A, CHANNEL_B, Api, StartApi, channel_toml

NEW_ID = "dddddddd-0000-4000-8000-000000000004"


def new_channel(name: str = "From the API") -> dict:
    data = tomllib.loads(channel_toml(NEW_ID, name))
    return data


async def test_list_and_get_channels_as_json_and_mirth_xml(api: Api) -> None:
    async with api.client() as client:
        listing = await client.get("/api/channels")
        one = await client.get(f"/api/channels/{CHANNEL_A}")
        xml = await client.get(f"/api/channels/{CHANNEL_A}", headers={"Accept": "application/xml"})
        names = await client.get("/api/channels/idsAndNames")
        missing = await client.get("/api/channels/nope")
    assert {c["id"] for c in listing.json()} == {CHANNEL_A, CHANNEL_B}
    assert one.json()["name"] == "Channel A"
    assert one.json()["origin"] == "file"
    assert one.json()["source"]["transportName"] == "Channel Reader"
    assert xml.headers["content-type"].startswith("application/xml")
    assert channel_from_xml(xml.text).name == "Channel A"
    assert names.json() == {CHANNEL_A: "Channel A", CHANNEL_B: "B"}
    assert missing.status_code == 404


async def test_create_deploy_and_restart_keeps_api_channels(
    start_api: StartApi, tmp_path: object
) -> None:
    async with trio.open_nursery() as first:
        api = await start_api(within=first)
        async with api.client() as client:
            created = await client.post("/api/channels", json=new_channel())
            assert created.status_code == 201, created.text
            again = await client.post("/api/channels", json=new_channel())
            assert again.status_code == 409
            deployed = await client.post(f"/api/channels/{NEW_ID}/_deploy")
            assert deployed.status_code == 200, deployed.text
            assert deployed.json()["state"] == "STARTED"
        result = await api.engine.route(NEW_ID, RawMessage("hello"))
        assert result.message_id == 1
        api.engine.request_stop()
        await api.engine.stopped.wait()
    # A new engine on the same database deploys it again from the CHANNEL table.
    api = await start_api()
    assert NEW_ID in api.engine.channels
    async with api.client() as client:
        stored = await client.get(f"/api/channels/{NEW_ID}")
    assert stored.json()["origin"] == "api"


async def test_create_from_mirth_xml_and_bad_bodies_are_400(api: Api) -> None:
    async with api.client() as client:
        xml = (
            (await client.get(f"/api/channels/{CHANNEL_A}", headers={"Accept": "application/xml"}))
            .text.replace(CHANNEL_A, NEW_ID)
            .replace("Channel A", "Copy of A")
        )
        created = await client.post(
            "/api/channels", content=xml, headers={"Content-Type": "application/xml"}
        )
        not_json = await client.post(
            "/api/channels", content="{nope", headers={"Content-Type": "application/json"}
        )
        bad_field = await client.post("/api/channels", json={"name": "x", "source": {}, "zz": 1})
        bad_xml = await client.post(
            "/api/channels", content="<channel>", headers={"Content-Type": "application/xml"}
        )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Copy of A"
    assert not_json.status_code == 400
    assert bad_field.status_code == 400 and "zz" in bad_field.json()["error"]
    assert bad_xml.status_code == 400


async def test_update_checks_the_revision(api: Api) -> None:
    async with api.client() as client:
        await client.post("/api/channels", json=new_channel())
        current = (await client.get(f"/api/channels/{NEW_ID}")).json()
        current = {k: v for k, v in current.items() if k not in ("enabled", "origin")}
        current["description"] = "first edit"
        first = await client.put(f"/api/channels/{NEW_ID}", json=current)
        current["description"] = "stale edit"
        stale = await client.put(f"/api/channels/{NEW_ID}", json=current)
        forced = await client.put(f"/api/channels/{NEW_ID}?override=true", json=current)
        file_channel = (await client.get(f"/api/channels/{CHANNEL_A}")).json()
        file_channel.pop("enabled"), file_channel.pop("origin")
        from_file = await client.put(f"/api/channels/{CHANNEL_A}", json=file_channel)
        final = (await client.get(f"/api/channels/{NEW_ID}")).json()
    assert first.status_code == 200, first.text
    assert first.json()["revision"] == current["revision"] + 1
    assert stale.status_code == 409
    assert "revision" in stale.json()["error"]
    assert forced.status_code == 200
    assert final["description"] == "stale edit"
    assert final["revision"] == current["revision"] + 2
    assert from_file.status_code == 409 and "file" in from_file.json()["error"]


async def test_deleting_a_channel_undeploys_it(api: Api) -> None:
    async with api.client() as client:
        await client.post("/api/channels", json=new_channel())
        await client.post(f"/api/channels/{NEW_ID}/_deploy")
        assert NEW_ID in api.engine.channels
        deleted = await client.delete(f"/api/channels/{NEW_ID}")
        gone = await client.get(f"/api/channels/{NEW_ID}")
        file_delete = await client.delete(f"/api/channels/{CHANNEL_A}")
    assert deleted.status_code == 204
    assert NEW_ID not in api.engine.channels
    assert gone.status_code == 404
    assert file_delete.status_code == 409


async def test_disabled_channel_cannot_be_deployed(api: Api) -> None:
    async with api.client() as client:
        await client.post("/api/channels", json=new_channel())
        assert (await client.post(f"/api/channels/{NEW_ID}/enabled/false")).status_code == 204
        refused = await client.post(f"/api/channels/{NEW_ID}/_deploy")
        listed = (await client.get(f"/api/channels/{NEW_ID}")).json()
        bad = await client.post(f"/api/channels/{NEW_ID}/enabled/maybe")
        await client.post(f"/api/channels/{NEW_ID}/enabled/true")
        accepted = await client.post(f"/api/channels/{NEW_ID}/_deploy")
    assert refused.status_code == 409 and "disabled" in refused.json()["error"]
    assert listed["enabled"] is False
    assert bad.status_code == 400
    assert accepted.status_code == 200


async def test_deploy_failure_is_422_with_the_reason(api: Api) -> None:
    broken = new_channel()
    broken["deployScript"] = {"code": "def broken(:", "language": "python"}
    unknown = new_channel()
    unknown["destinations"][0]["transportName"] = "No Such Connector"
    async with api.client() as client:
        created = await client.post("/api/channels", json=broken)
        assert created.status_code == 201, created.text
        response = await client.post(f"/api/channels/{NEW_ID}/_deploy")
        not_storable = await client.post(
            "/api/channels", json={**unknown, "id": "eeeeeeee-0000-4000-8000-000000000005"}
        )
    assert response.status_code == 422
    assert "deploy script" in response.json()["error"]
    assert not_storable.status_code == 400
    assert "No Such Connector" in not_storable.json()["error"]


async def test_stop_start_pause_resume_halt_undeploy(api: Api) -> None:
    engine = api.engine
    async with api.client() as client:

        async def state() -> str:
            return (await client.get(f"/api/channels/{CHANNEL_A}/status")).json()["state"]

        assert (await client.post(f"/api/channels/{CHANNEL_A}/_pause")).json()["state"] == (
            "PAUSED"
        )
        assert await state() == "PAUSED"
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_resume")).status_code == 200
        assert await state() == "STARTED"
        assert (await engine.route(CHANNEL_A, RawMessage("one"))).message_id == 1
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_stop")).json()["state"] == (
            "STOPPED"
        )
        assert CHANNEL_A not in engine.channels
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_start")).json()["state"] == (
            "STARTED"
        )
        assert (await engine.route(CHANNEL_A, RawMessage("two"))).message_id == 2
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_halt")).json()["state"] == (
            "STOPPED"
        )
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_undeploy")).status_code == 204
        assert await state() == "UNDEPLOYED"
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_stop")).status_code == 409
        assert (await client.post(f"/api/channels/{CHANNEL_A}/_deploy")).status_code == 200
        assert await state() == "STARTED"


async def test_a_paused_channel_refuses_messages_until_resumed(api: Api) -> None:
    from pannier.connectors import ChannelStoppedError

    async with api.client() as client:
        await client.post(f"/api/channels/{CHANNEL_A}/connector/0/_stop")
        try:
            await api.engine.route(CHANNEL_A, RawMessage("x"))
            raise AssertionError("a paused channel took a message")
        except ChannelStoppedError:
            pass
        resumed = await client.post(f"/api/channels/{CHANNEL_A}/connector/0/_start")
        destination = await client.post(f"/api/channels/{CHANNEL_A}/connector/1/_stop")
        missing = await client.post(f"/api/channels/{CHANNEL_A}/connector/9/_stop")
    assert resumed.json()["state"] == "STARTED"
    assert destination.status_code == 409
    assert missing.status_code == 404
    assert (await api.engine.route(CHANNEL_A, RawMessage("y"))).message_id >= 1


async def test_redeploy_all_redeploys_deployed_channels(api: Api) -> None:
    before = api.engine.channels[CHANNEL_A]
    async with api.client() as client:
        response = await client.post("/api/channels/_redeployAll")
    assert response.status_code == 200
    assert {r["channelId"]: r["state"] for r in response.json()} == {
        CHANNEL_A: "STARTED",
        CHANNEL_B: "STARTED",
    }
    assert api.engine.channels[CHANNEL_A] is not before


async def test_dashboard_statistics_and_clearing_them(api: Api) -> None:
    for text in ("one", "two", "three"):
        await api.engine.route(CHANNEL_A, RawMessage(text))
    async with api.client() as client:
        statuses = (await client.get("/api/channels/statuses")).json()
        stats = (await client.get(f"/api/channels/{CHANNEL_A}/statistics")).json()
        cleared = await client.post(
            "/api/channels/_clearStatistics", params={"channelId": CHANNEL_A, "sent": "false"}
        )
        after = (await client.get(f"/api/channels/{CHANNEL_A}/statistics")).json()
        unknown = await client.post("/api/channels/_clearStatistics", params={"channelId": "x"})
        everything = (await client.get("/api/channels/statistics")).json()
    by_id = {s["channelId"]: s for s in statuses}
    a = by_id[CHANNEL_A]
    assert a["statusType"] == "CHANNEL" and a["state"] == "STARTED"
    deployed_at = datetime.fromisoformat(a["deployedDate"])
    assert timedelta(0) <= datetime.now(UTC) - deployed_at < timedelta(minutes=10)
    assert a["statistics"]["RECEIVED"] == 3
    assert a["statistics"]["SENT"] == 3
    assert [c["metaDataId"] for c in a["childStatuses"]] == [0, 1]
    assert a["childStatuses"][1]["statistics"]["SENT"] == 3
    assert a["queued"] == 0
    assert by_id[CHANNEL_B]["statistics"]["RECEIVED"] == 0
    assert (stats["RECEIVED"], stats["SENT"]) == (3, 3)
    assert cleared.status_code == 204
    assert (after["RECEIVED"], after["SENT"]) == (0, 3)
    assert after["lifetime"]["RECEIVED"] == 3
    assert unknown.status_code == 404
    assert {s["channelId"] for s in everything} == {CHANNEL_A, CHANNEL_B}


async def test_a_stopped_queued_destination_holds_its_messages_until_started(api: Api) -> None:
    """Mirth's connector ``_stop`` on a destination: the channel keeps accepting, the messages
    wait in the destination's queue (the dashboard shows them and the connector STOPPED), and
    they are delivered, in order, once it starts again."""
    data = tomllib.loads(channel_toml(NEW_ID, "Forwarder"))
    data["destinations"][0].update(queueEnabled=True, retryIntervalMillis=100)
    data["destinations"][0]["properties"]["channelId"] = CHANNEL_B

    def received_by_b() -> list[str]:
        assert api.engine.store is not None
        with api.engine.store.engine.connect() as conn:
            (local_id,) = conn.exec_driver_sql(
                f"SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS WHERE CHANNEL_ID = '{CHANNEL_B}'"
            ).one()
            rows = conn.exec_driver_sql(
                f"SELECT CONTENT FROM D_MC{local_id} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 1 "
                "ORDER BY MESSAGE_ID"
            ).all()
        return [r[0] for r in rows]

    async with api.client() as client:
        assert (await client.post("/api/channels", json=data)).status_code == 201
        assert (await client.post(f"/api/channels/{NEW_ID}/_deploy")).status_code == 200
        stopped = await client.post(f"/api/channels/{NEW_ID}/connector/1/_stop")
        assert stopped.status_code == 200, stopped.text
        for text in ("one", "two", "three"):
            await api.engine.route(NEW_ID, RawMessage(text))
        await trio.sleep(0.5)  # a running queue would have delivered them by now
        assert received_by_b() == []
        (status,) = [
            s
            for s in (await client.get("/api/channels/statuses")).json()
            if s["channelId"] == NEW_ID
        ]
        destination = status["childStatuses"][1]
        assert (destination["state"], destination["queued"]) == ("STOPPED", 3)
        started = await client.post(f"/api/channels/{NEW_ID}/connector/1/_start")
        assert started.status_code == 200
        with trio.fail_after(30):
            while len(received_by_b()) < 3:
                await trio.sleep(0.05)
    assert received_by_b() == ["one", "two", "three"]


async def test_bulk_operations_report_each_channel(api: Api) -> None:
    """Mirth's bulk forms: ids as repeated channelId parameters or a JSON list; one unknown
    channel gets its own error without stopping the others."""
    async with api.client() as client:
        stopped = await client.post(
            "/api/channels/_stop", params=[("channelId", CHANNEL_A), ("channelId", CHANNEL_B)]
        )
        started = await client.post("/api/channels/_start", json=[CHANNEL_A, "no-such-channel"])
        empty = await client.post("/api/channels/_deploy", json={"channelIds": "A"})
        monitor = await client.post(
            "/api/channels/_stop", params={"channelId": CHANNEL_A}, auth=None
        )
    assert stopped.status_code == 200
    assert [(r["channelId"], r["state"]) for r in stopped.json()] == [
        (CHANNEL_A, "STOPPED"),
        (CHANNEL_B, "STOPPED"),
    ]
    first, second = started.json()
    assert (first["channelId"], first["status"], first["state"]) == (CHANNEL_A, 200, "STARTED")
    assert second["channelId"] == "no-such-channel" and second["status"] >= 400
    assert second["error"]
    assert empty.status_code == 400 and "channel ids" in empty.json()["error"]
    assert monitor.status_code == 401
    assert api.engine.channel_state(CHANNEL_B) == "STOPPED"
