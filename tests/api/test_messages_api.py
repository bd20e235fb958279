"""The message routes over real HTTP against a running engine: search (every filter, paging,
bad input), count, max id, one message in full, send, reprocess and remove — and the search
queries on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trio
from pannier.config import load_config
from pannier.engine import Engine

# db_url, mysql_url, postgres_url: the pytest plugin pannier.testing.databases (pannier-core)

CHANNEL_ID = "7a1c2f4e-0b6d-4c8e-9f10-3e5d7c9a1b20"
ADT = (
    "MSH|^~\\&|LAB|GOODHEALTH|REGADT|CLINIC|20240501120000||ADT^A01|MSG{n}|P|2.5\r"
    "PID|1||{pid}^^^HOSP^MR||DOE^JOHN\r"
)
ORU = "MSH|^~\\&|LAB|OTHERPLACE|REGADT|CLINIC|20240501120000||ORU^R01|ORU{n}|P|2.5\r"

CHANNEL = f"""
id = "{CHANNEL_ID}"
name = "API messages"
[properties]
messageStorageMode = "DEVELOPMENT"
[source]
transportName = "Channel Reader"
inboundDataType = "HL7V2"
responseVariable = "Auto-generate (Destinations completed)"
[[destinations]]
metaDataId = 1
name = "Write file"
transportName = "File Writer"
[destinations.properties]
directory = "out"
outputPattern = "${{message.messageId}}.hl7"
outputAppend = false
"""

HEADERS = {"X-Requested-With": "pannier-tests"}


def write_config(tmp_path: Path, database_url: str | None = None, api: str = "") -> Path:
    (tmp_path / "channels").mkdir(exist_ok=True)
    (tmp_path / "channels" / "api.toml").write_text(
        CHANNEL.replace('directory = "out"', f'directory = "{tmp_path / "out"}"'),
        encoding="utf-8",
    )
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    path = tmp_path / "pannier.toml"
    path.write_text(
        '[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n'
        f'[api]\nhost = "127.0.0.1"\nport = 0\n{api}\n{database}',
        encoding="utf-8",
    )
    return path


class Api:
    """A logged-in client of the running engine, and the engine itself."""

    def __init__(self, engine: Engine, client: httpx.AsyncClient, tmp_path: Path) -> None:
        self.engine = engine
        self.client = client
        self.tmp_path = tmp_path

    async def send(self, text: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/channels/{CHANNEL_ID}/messages", content=text.encode(), params=params
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def search(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/channels/{CHANNEL_ID}/messages", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def ids(self, **params: Any) -> list[int]:
        return [m["messageId"] for m in await self.search(**params)]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        assert self.engine.store is not None
        with self.engine.store.engine.connect() as conn:
            n = conn.execute(sa.text("SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")).scalar()
            return [tuple(r) for r in conn.execute(sa.text(sql.replace("{n}", str(n))))]

    def execute(self, sql: str) -> None:
        assert self.engine.store is not None
        with self.engine.store.engine.begin() as conn:
            n = conn.execute(sa.text("SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")).scalar()
            conn.execute(sa.text(sql.replace("{n}", str(n))))


async def start_api(
    nursery: trio.Nursery, tmp_path: Path, database_url: str | None = None, api: str = ""
) -> Api:
    """An engine serving the real API on a free port, and a client logged in as the seeded
    Mirth admin (HTTP Basic, password ``admin``)."""
    config = load_config(write_config(tmp_path, database_url, api), environ={})
    engine = Engine(config, serve_api=True)
    await nursery.start(engine.run)
    assert not engine.deploy_errors, engine.deploy_errors
    assert engine.api_address is not None
    client = httpx.AsyncClient(
        base_url=engine.api_address, headers=HEADERS, auth=("admin", "admin"), timeout=30
    )
    return Api(engine, client, tmp_path)


@pytest.fixture
async def api(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Api]:
    api = await start_api(nursery, tmp_path)
    async with api.client:
        yield api


# --- send and read back ---------------------------------------------------------------------


async def test_send_stores_the_message_and_answers_its_id_and_statuses(api: Api) -> None:
    sent = await api.send(ADT.format(n=1, pid=123), sourceMapEntry=["who=tests", "ward=B2"])
    assert sent["statuses"] == {"0": "TRANSFORMED", "1": "SENT"}
    assert sent["response"]["status"] == "SENT"
    message_id = sent["messageId"]
    assert (api.tmp_path / "out" / f"{message_id}.hl7").exists()

    response = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/{message_id}")
    assert response.status_code == 200
    message = response.json()
    assert message["messageId"] == message_id and message["processed"] is True
    source, destination = message["connectorMessages"]["0"], message["connectorMessages"]["1"]
    assert source["connectorName"] == "Source" and source["status"] == "TRANSFORMED"
    assert source["raw"]["content"] == ADT.format(n=1, pid=123)
    assert source["raw"]["dataType"] == "HL7V2" and source["raw"]["encrypted"] is False
    assert source["sourceMapContent"]["map"] == {"who": "tests", "ward": "B2"}
    assert source["metaDataMap"] == {"SOURCE": "GOODHEALTH", "TYPE": "ADT-A01"}
    assert destination["connectorName"] == "Write file" and destination["status"] == "SENT"
    assert destination["encoded"]["content"] == ADT.format(n=1, pid=123)
    assert "<status>SENT</status>" in destination["response"]["content"]
    assert message["receivedDate"].endswith("+00:00")


async def test_a_bad_message_is_stored_as_an_error_with_its_error_content(api: Api) -> None:
    sent = await api.send("this is not HL7")
    assert sent["statuses"] == {"0": "ERROR"}
    response = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/{sent['messageId']}")
    source = response.json()["connectorMessages"]["0"]
    assert source["status"] == "ERROR" and source["errorCode"] == 1
    assert "MSH" in source["processingErrorContent"]["content"]


async def test_send_refuses_what_it_cannot_do(api: Api) -> None:
    url = f"/api/channels/{CHANNEL_ID}/messages"
    bad_entry = await api.client.post(url, content=b"x", params={"sourceMapEntry": "novalue"})
    assert bad_entry.status_code == 400 and "sourceMapEntry" in bad_entry.json()["error"]
    subset = await api.client.post(url, content=b"x", params={"destinationMetaDataId": "1"})
    assert subset.status_code == 400 and "destinationMetaDataId" in subset.json()["error"]
    unknown = await api.client.post(
        "/api/channels/00000000-0000-0000-0000-000000000000/messages", content=b"x"
    )
    assert unknown.status_code == 404 and "00000000-0000" in unknown.json()["error"]
    assert api.rows("SELECT COUNT(*) FROM D_M{n}") == [(0,)], "nothing was stored"


async def test_send_to_a_channel_that_is_not_started_is_refused(api: Api) -> None:
    api.engine.channels[CHANNEL_ID].state = "stopped"  # as a stopped channel reports itself
    response = await api.client.post(f"/api/channels/{CHANNEL_ID}/messages", content=b"MSH|")
    assert response.status_code == 409 and "not started" in response.json()["error"]
    api.engine.channels[CHANNEL_ID].state = "started"


# --- search ---------------------------------------------------------------------------------


async def test_search_filters_and_pages_newest_first(api: Api) -> None:
    first = (await api.send(ADT.format(n=1, pid=123)))["messageId"]
    bad = (await api.send("garbage"))["messageId"]
    other = (await api.send(ORU.format(n=3)))["messageId"]
    fourth = (await api.send(ADT.format(n=4, pid=456)))["messageId"]

    assert await api.ids() == [fourth, other, bad, first], "newest first"
    assert await api.ids(limit=2) == [fourth, other]
    assert await api.ids(limit=2, offset=2) == [bad, first]
    assert await api.ids(minMessageId=other) == [fourth, other]
    assert await api.ids(maxMessageId=bad) == [bad, first]
    assert await api.ids(status="E") == [bad]
    assert await api.ids(status=["E", "S"]) == [fourth, other, bad, first]
    assert await api.ids(status="ERROR") == [bad], "Mirth's status names work too"
    assert await api.ids(textSearch="pid|1||456") == [fourth], "content search, any case"
    assert await api.ids(textSearch="100%") == [], "LIKE wildcards are matched literally"
    assert await api.ids(metaDataSearch="SOURCE = OTHERPLACE") == [other]
    assert await api.ids(metaDataSearch="type starts with ADT") == [fourth, first]
    assert await api.ids(metaDataSearch=["TYPE = ADT-A01", "SOURCE != GOODHEALTH"]) == []
    assert await api.ids(serverId=api.engine.server_id) == [fourth, other, bad, first]
    assert await api.ids(serverId="someone-else") == []

    hour = timedelta(hours=1)
    now = datetime.now(UTC)
    assert len(await api.ids(startDate=(now - hour).isoformat())) == 4
    assert await api.ids(startDate=(now + hour).isoformat()) == []
    epoch_ms = str(int((now + hour).timestamp() * 1000))
    assert len(await api.ids(endDate=epoch_ms)) == 4, "Mirth's epoch milliseconds"
    assert await api.ids(endDate=(now - hour).strftime("%Y-%m-%dT%H:%M:%S")) == []

    (found,) = await api.search(status="E")
    assert "raw" not in found["connectorMessages"]["0"], "no content unless asked"
    (found,) = await api.search(status="E", includeContent="true")
    assert found["connectorMessages"]["0"]["raw"]["content"] == "garbage"

    count = await api.client.get(
        f"/api/channels/{CHANNEL_ID}/messages/count", params={"status": "S"}
    )
    assert count.json() == {"count": 3}
    top = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/maxMessageId")
    assert top.json() == {"maxMessageId": fourth}

    body = {
        "status": ["T"],
        "metaDataSearch": [{"columnName": "TYPE", "operator": "EQUAL", "value": "ADT-A01"}],
    }
    posted = await api.client.post(
        f"/api/channels/{CHANNEL_ID}/messages/_search", json=body, params={"limit": 1}
    )
    assert [m["messageId"] for m in posted.json()] == [fourth]
    posted_count = await api.client.post(
        f"/api/channels/{CHANNEL_ID}/messages/count/_search", json={"textSearch": "garbage"}
    )
    assert posted_count.json() == {"count": 1}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "X"}, "status = 'X'"),
        ({"startDate": "yesterday"}, "startDate = 'yesterday'"),
        ({"endDate": "2024-13-45"}, "endDate = '2024-13-45'"),
        ({"limit": "0"}, "limit = 0"),
        ({"limit": "100000"}, "limit = 100000"),
        ({"limit": "ten"}, "limit = 'ten'"),
        ({"offset": "-1"}, "offset = -1"),
        ({"minMessageId": "1.5"}, "minMessageId = '1.5'"),
        ({"maxMessageId": str(2**63)}, f"maxMessageId = {2**63}"),
        ({"textSearch": "a\x00b"}, "textSearch: NUL"),
        ({"includeContent": "maybe"}, "includeContent = 'maybe'"),
        ({"metaDataSearch": "PATIENT_ID = 1"}, "PATIENT_ID"),
        ({"metaDataSearch": "SOURCE LIKE x"}, "metaDataSearch = 'SOURCE LIKE x'"),
        (
            {"startDate": "2024-05-02T00:00:00Z", "endDate": "2024-05-01T00:00:00Z"},
            "is after endDate",
        ),
    ],
)
async def test_bad_search_input_is_a_400_naming_the_parameter(
    api: Api, params: dict[str, str], named: str
) -> None:
    response = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages", params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


async def test_unknown_channel_and_message_are_404(api: Api) -> None:
    nobody = "/api/channels/00000000-0000-0000-0000-000000000000/messages"
    for path in (nobody, f"{nobody}/count", f"{nobody}/maxMessageId", f"{nobody}/1"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
        assert "00000000-0000-0000-0000-000000000000" in response.json()["error"]
    missing = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/999")
    assert missing.status_code == 404 and "message 999" in missing.json()["error"]
    too_big = await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/{2**63}")
    assert too_big.status_code == 400 and "messageId" in too_big.json()["error"]


# --- reprocess ------------------------------------------------------------------------------


async def test_reprocess_one_stores_a_new_message_from_the_original_raw(api: Api) -> None:
    original = (await api.send(ADT.format(n=1, pid=123), sourceMapEntry="who=tests"))["messageId"]
    response = await api.client.post(f"/api/channels/{CHANNEL_ID}/messages/{original}/_reprocess")
    assert response.status_code == 200, response.text
    new_id = response.json()["messageId"]
    assert new_id > original and response.json()["originalId"] == original
    message = (await api.client.get(f"/api/channels/{CHANNEL_ID}/messages/{new_id}")).json()
    assert message["originalId"] == original
    source = message["connectorMessages"]["0"]
    assert source["raw"]["content"] == ADT.format(n=1, pid=123)
    assert source["sourceMapContent"]["map"] == {
        "who": "tests",
        "reprocessed": True,
        "originalMessageId": original,
    }
    assert message["connectorMessages"]["1"]["status"] == "SENT"
    assert (api.tmp_path / "out" / f"{new_id}.hl7").exists(), "sent again"


async def test_reprocess_by_filter_takes_only_matching_messages_once(api: Api) -> None:
    adt = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    bad = (await api.send("garbage"))["messageId"]
    response = await api.client.post(
        f"/api/channels/{CHANNEL_ID}/messages/_reprocess", params={"status": "E"}
    )
    assert response.status_code == 200, response.text
    (done,) = response.json()["reprocessed"]
    assert done["originalId"] == bad and done["messageId"] > bad
    everything = await api.client.post(f"/api/channels/{CHANNEL_ID}/messages/_reprocess")
    originals = [d["originalId"] for d in everything.json()["reprocessed"]]
    assert originals == [adt, bad, done["messageId"]], "oldest first, never its own output"
    assert len(await api.ids()) == 6


async def test_bulk_reprocess_stops_at_the_page_size_and_says_where_to_go_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    api = await start_api(nursery, tmp_path, api="max_page_size = 2")
    async with api.client:
        ids = [(await api.send(ADT.format(n=n, pid=n)))["messageId"] for n in range(3)]
        url = f"/api/channels/{CHANNEL_ID}/messages/_reprocess"
        first = (await api.client.post(url)).json()
        assert [d["originalId"] for d in first["reprocessed"]] == ids[:2]
        assert first["more"] is True
        assert first["next"] == {"minMessageId": ids[1] + 1, "maxMessageId": ids[2]}
        rest = (await api.client.post(url, params=first["next"])).json()
        assert [d["originalId"] for d in rest["reprocessed"]] == ids[2:]
        assert rest["more"] is False and "next" not in rest


async def test_reprocess_needs_the_raw_content(api: Api) -> None:
    message_id = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    api.execute(f"DELETE FROM D_MC{{n}} WHERE MESSAGE_ID = {message_id} AND CONTENT_TYPE = 1")
    response = await api.client.post(f"/api/channels/{CHANNEL_ID}/messages/{message_id}/_reprocess")
    assert response.status_code == 409 and "RAW" in response.json()["error"]
    missing = await api.client.post(f"/api/channels/{CHANNEL_ID}/messages/999/_reprocess")
    assert missing.status_code == 404


# --- remove ---------------------------------------------------------------------------------


async def test_remove_one_deletes_every_row_of_the_message_and_keeps_statistics(api: Api) -> None:
    keep = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    gone = (await api.send(ADT.format(n=2, pid=2)))["messageId"]
    await api.engine.channels[CHANNEL_ID]._flush_statistics()
    before = api.rows("SELECT METADATA_ID, RECEIVED, SENT FROM D_MS{n} ORDER BY 1")

    response = await api.client.delete(f"/api/channels/{CHANNEL_ID}/messages/{gone}")
    assert response.status_code == 200, response.text
    for table, column in (
        ("D_M", "ID"),
        ("D_MM", "MESSAGE_ID"),
        ("D_MC", "MESSAGE_ID"),
        ("D_MCM", "MESSAGE_ID"),
    ):
        assert api.rows(f"SELECT DISTINCT {column} FROM {table}{{n}}") == [(keep,)], table
    assert api.rows("SELECT METADATA_ID, RECEIVED, SENT FROM D_MS{n} ORDER BY 1") == before
    again = await api.client.delete(f"/api/channels/{CHANNEL_ID}/messages/{gone}")
    assert again.status_code == 404


async def test_a_message_still_in_process_is_not_removed(api: Api) -> None:
    message_id = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    api.execute(f"UPDATE D_M{{n}} SET PROCESSED = FALSE WHERE ID = {message_id}")
    response = await api.client.delete(f"/api/channels/{CHANNEL_ID}/messages/{message_id}")
    assert response.status_code == 409 and "still being processed" in response.json()["error"]
    assert await api.ids() == [message_id]


async def test_remove_all_with_a_filter(api: Api) -> None:
    adt = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    await api.send("garbage")
    await api.send("rubbish")
    response = await api.client.delete(
        f"/api/channels/{CHANNEL_ID}/messages/_removeAll", params={"status": "E"}
    )
    assert response.json() == {"removed": 2, "kept": 0}
    assert await api.ids() == [adt]
    everything = await api.client.delete(f"/api/channels/{CHANNEL_ID}/messages/_removeAll")
    assert everything.json() == {"removed": 1, "kept": 0}
    assert await api.ids() == []


# --- the same queries on every database -----------------------------------------------------


async def test_search_and_remove_on_each_database(
    nursery: trio.Nursery, tmp_path: Path, db_url: str
) -> None:
    api = await start_api(nursery, tmp_path, db_url)
    async with api.client:
        first = (await api.send(ADT.format(n=1, pid=123)))["messageId"]
        bad = (await api.send("garbage 50%_off"))["messageId"]
        last = (await api.send(ORU.format(n=3)))["messageId"]
        assert await api.ids() == [last, bad, first]
        assert await api.ids(status="E") == [bad]
        assert await api.ids(textSearch="JOHN") == [first]
        assert await api.ids(textSearch="50%_") == [bad]
        assert await api.ids(textSearch="5_%") == []
        assert await api.ids(metaDataSearch="SOURCE CONTAINS place") == [last]
        assert await api.ids(metaDataSearch="TYPE DOES NOT START WITH ORU") == [first]
        now = datetime.now(UTC)
        assert await api.ids(startDate=(now - timedelta(minutes=10)).isoformat()) == [
            last,
            bad,
            first,
        ]
        assert await api.ids(endDate=(now - timedelta(minutes=10)).isoformat()) == []
        assert await api.ids(minMessageId=bad, limit=1) == [last]
        (full,) = await api.search(includeContent="true", status="E")
        assert full["connectorMessages"]["0"]["raw"]["content"] == "garbage 50%_off"
        removed = await api.client.delete(
            f"/api/channels/{CHANNEL_ID}/messages/_removeAll", params={"status": "E"}
        )
        assert removed.json() == {"removed": 1, "kept": 0}
        assert await api.ids() == [last, first]


# --- roles ----------------------------------------------------------------------------------


async def test_roles_monitor_reads_operator_sends_manager_removes(api: Api) -> None:
    from pannier.api.accounts import create_user
    from pannier.api.auth import hash_password

    store = api.engine.store
    assert store is not None
    for role in ("monitor", "operator", "manager"):
        password_hash = await trio.to_thread.run_sync(hash_password, f"{role}-secret")
        await store.run_sync(create_user, store, role, password_hash, role, {})
    message_id = (await api.send(ADT.format(n=1, pid=1)))["messageId"]
    base = f"/api/channels/{CHANNEL_ID}/messages"
    calls = {
        "read": ("GET", base),
        "show": ("GET", f"{base}/{message_id}"),
        "send": ("POST", base),
        "reprocess": ("POST", f"{base}/{message_id}/_reprocess"),
        "remove": ("DELETE", f"{base}/_removeAll"),
    }
    allowed = {
        "monitor": {"read", "show"},
        "operator": {"read", "show", "send", "reprocess"},
        "manager": {"read", "show", "send", "reprocess", "remove"},
    }
    for role, may in allowed.items():
        for name, (method, path) in calls.items():
            response = await api.client.request(
                method,
                path,
                params={"minMessageId": "999999"} if name == "remove" else None,
                content=ADT.format(n=9, pid=9).encode() if name == "send" else None,
                auth=(role, f"{role}-secret"),
            )
            if name in may:
                assert response.status_code == 200, (role, name, response.text)
            else:
                assert response.status_code == 403, (role, name, response.text)
                assert role in response.json()["error"]
    anonymous = await api.client.get(base, auth=None)
    assert anonymous.status_code == 401
    wrong = await api.client.get(base, auth=("admin", "not-the-password"))
    assert wrong.status_code == 401
