"""Login, sessions, HTTP Basic, Mirth's admin hash, the X-Requested-With rule, login limits,
users and roles, CORS, request limits and error bodies — through real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import ADMIN, HEADERS, USER_PASSWORD, Api, StartApi, basic


async def test_mirth_admin_hash_accepted_with_admin_over_basic(api: Api) -> None:
    async with api.client() as client:
        response = await client.get("/api/users/current")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "admin"
    assert response.json()["role"] == "admin"  # Mirth's own admin counts as admin


async def test_wrong_basic_password_is_refused_without_details(api: Api) -> None:
    async with api.client(auth=("admin", "nope")) as client:
        response = await client.get("/api/server/id")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "error" in response.json()


async def test_form_login_sets_a_session_cookie_then_logout_ends_it(api: Api) -> None:
    async with api.client(auth=None) as client:
        login = await client.post(
            "/api/users/_login", data={"username": "admin", "password": "admin"}
        )
        assert login.status_code == 200, login.text
        assert login.json()["status"] == "SUCCESS"
        assert "JSESSIONID" in client.cookies
        current = await client.get("/api/users/current")
        assert current.status_code == 200
        assert current.json()["username"] == "admin"
        out = await client.post("/api/users/_logout")
        assert out.status_code == 204
        client.cookies.set("JSESSIONID", login.cookies["JSESSIONID"], path="/api")
        after = await client.get("/api/users/current")
        assert after.status_code == 401


async def test_json_login_and_a_failed_login_answer_login_status(api: Api) -> None:
    async with api.client(auth=None) as client:
        ok = await client.post("/api/users/_login", json={"username": "admin", "password": "admin"})
        bad = await client.post("/api/users/_login", json={"username": "admin", "password": "x"})
        missing = await client.post("/api/users/_login", json={"username": "admin"})
    assert ok.json()["status"] == "SUCCESS"
    assert bad.status_code == 401
    assert bad.json()["status"] == "FAIL"
    assert missing.status_code == 400
    assert "password" in missing.json()["error"]


async def test_login_is_written_to_the_event_table(api: Api) -> None:
    async with api.client(auth=None) as client:
        await client.post("/api/users/_login", data={"username": "admin", "password": "admin"})
        await client.post("/api/users/_login", data={"username": "admin", "password": "bad"})
    store = api.engine.store
    assert store is not None
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT NAME, OUTCOME, USER_ID, SERVER_ID FROM EVENT ORDER BY ID")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Login", "SUCCESS", 1, api.engine.server_id),
        ("Login", "FAILURE", 0, api.engine.server_id),
    ]
    async with api.client() as client:
        events = (await client.get("/api/events", params={"limit": 1})).json()
    assert [e["outcome"] for e in events["events"]] == ["FAILURE"]  # newest first, paged


async def test_requests_without_x_requested_with_are_refused_as_mirth(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, auth=ADMIN) as client:
        response = await client.get("/api/server/version")
        health = await client.get("/api/health/live")
    assert response.status_code == 400
    assert response.json() == {"error": "All requests must have 'X-Requested-With' header"}
    assert health.status_code == 200  # probes are exempt


async def test_x_requested_with_rule_can_be_turned_off(start_api: StartApi) -> None:
    api = await start_api(config="require_requested_with = false\n")
    async with httpx.AsyncClient(base_url=api.url, auth=ADMIN) as client:
        response = await client.get("/api/server/version")
    assert response.status_code == 200


async def test_user_locked_out_after_repeated_failures(start_api: StartApi) -> None:
    api = await start_api(config="login_max_failures = 3\nlogin_lockout_seconds = 600\n")
    async with api.client(auth=None) as client:
        for _ in range(3):
            failed = await client.post(
                "/api/users/_login", data={"username": "admin", "password": "wrong"}
            )
            assert failed.json()["status"] == "FAIL"
        locked = await client.post(
            "/api/users/_login", data={"username": "admin", "password": "admin"}
        )
    assert locked.status_code == 429
    assert locked.json()["status"] == "FAIL_LOCKED_OUT"
    assert int(locked.headers["Retry-After"]) > 0
    async with api.client() as client:  # Basic is locked out too
        assert (await client.get("/api/server/id")).status_code == 401


async def test_login_attempts_per_address_are_rate_limited(start_api: StartApi) -> None:
    api = await start_api(config="login_rate_per_minute = 2\n")
    async with api.client(auth=None) as client:
        answers = [
            await client.post("/api/users/_login", data={"username": f"u{i}", "password": "p"})
            for i in range(3)
        ]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert "too many login attempts" in answers[2].json()["message"]


async def test_admin_creates_a_user_whose_password_is_stored_in_mirth_format(api: Api) -> None:
    async with api.client() as client:
        created = await client.post(
            "/api/users", json={"username": "olga", "password": "pw-olga", "role": "operator"}
        )
        assert created.status_code == 201, created.text
        duplicate = await client.post(
            "/api/users", json={"username": "olga", "password": "x", "role": "operator"}
        )
        bad_role = await client.post(
            "/api/users", json={"username": "ivan", "password": "x", "role": "boss"}
        )
    assert duplicate.status_code == 409
    assert bad_role.status_code == 400 and "boss" in bad_role.json()["error"]
    store = api.engine.store
    assert store is not None
    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT PASSWORD FROM PERSON_PASSWORD JOIN PERSON ON PERSON.ID = PERSON_ID "
                "WHERE USERNAME = 'olga'"
            )
        ).scalar()
    import base64

    assert len(base64.b64decode(stored)) == 40  # salt(8) + PBKDF2-SHA256 key(32)
    async with api.client(auth=("olga", "pw-olga")) as client:
        me = await client.get("/api/users/current")
    assert me.json()["role"] == "operator"


async def test_password_change_takes_effect_and_others_need_admin(api: Api) -> None:
    olga = await api.add_user("olga", "operator")
    await api.add_user("ivan", "operator")
    async with api.client(auth=olga) as client:
        other = await client.put("/api/users/ivan/password", json={"password": "x"})
        own = await client.put("/api/users/olga/password", json={"password": "new-pass"})
    assert other.status_code == 403
    assert own.status_code == 204
    async with api.client(auth=("olga", USER_PASSWORD)) as client:
        assert (await client.get("/api/users/current")).status_code == 401
    async with api.client(auth=("olga", "new-pass")) as client:
        assert (await client.get("/api/users/current")).status_code == 200


async def test_malformed_basic_header_is_a_clear_400(api: Api) -> None:
    async with httpx.AsyncClient(
        base_url=api.url, headers={**HEADERS, "Authorization": "Basic !!!"}
    ) as client:
        response = await client.get("/api/server/id")
    assert response.status_code == 400
    assert "Base64" in response.json()["error"]
    assert basic("a", "b").startswith("Basic ")


async def test_cors_closed_by_default_and_open_for_configured_origins(
    start_api: StartApi,
) -> None:
    api = await start_api(config='cors_origins = ["https://ops.example"]\n')
    async with api.client() as client:
        allowed = await client.get("/api/server/id", headers={"Origin": "https://ops.example"})
        other = await client.get("/api/server/id", headers={"Origin": "https://evil.example"})
        preflight = await client.options(
            "/api/server/id",
            headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
        )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert preflight.status_code == 204
    assert "X-Requested-With" in preflight.headers["Access-Control-Allow-Headers"]


async def test_request_body_limit_answers_413_json(start_api: StartApi) -> None:
    api = await start_api(config="max_request_bytes = 1000\n")
    async with api.client() as client:
        response = await client.put("/api/server/configurationMap", content=b"x" * 5000)
    assert response.status_code == 413
    assert "max_request_bytes" in response.json()["error"]


async def test_unknown_routes_and_methods_answer_json_errors(api: Api) -> None:
    async with api.client() as client:
        missing = await client.get("/api/nothing/here")
        method = await client.delete("/api/server/id")
    assert missing.status_code == 404 and "error" in missing.json()
    assert method.status_code == 405 and "error" in method.json()


@pytest.mark.parametrize("role", ["admin", "manager", "operator", "monitor"])
async def test_only_admins_manage_users(api: Api, role: str) -> None:
    credentials = await api.add_user(f"user-{role}", role)
    async with api.client(auth=credentials) as client:
        listing = await client.get("/api/users")
    assert listing.status_code == (200 if role == "admin" else 403)


async def test_tls_with_cert_and_key_files(start_api: StartApi, tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "api.key"))
    api = await start_api(
        config=f'tls_cert = "{tmp_path / "api.pem"}"\ntls_key = "{tmp_path / "api.key"}"\n'
    )
    assert api.url.startswith("https://")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with api.client(verify=context) as client:
        response = await client.get("/api/server/version")
    assert response.status_code == 200
