"""0x01 through HTTP: the open mode, plain ``Auth``, ``BasicAuth``, users CRUD, 404/405, CORS."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from tests.compat_v1.conftest import (
    BOB100_BASIC,
    BOB100_EMAIL,
    BOB100_PASSWORD,
    BOB_BASIC,
    BOB_EMAIL,
    BOB_PASSWORD,
    CompatFactory,
    basic,
    make_user,
)
from tests.conftest import Client
from watchword.domain.errors import StoreUnavailable
from watchword.services.context import CLI

USER_KEYS = ["created_at", "email", "first_name", "id", "last_name", "updated_at"]
NOT_ALLOWED = (
    "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n"
    "<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
)


def assert_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": text}
    assert response.headers["access-control-allow-origin"] == "*"


def assert_user_json(data: object, email: str) -> None:
    assert isinstance(data, dict)
    assert list(data) == USER_KEYS  # sorted, exactly these, never a password
    assert data["email"] == email
    for key in ("created_at", "updated_at"):
        assert len(data[key]) == 19 and data[key][10] == "T", data[key]


# -- mounting ---------------------------------------------------------------------------------


async def test_unset_auth_type_is_not_served_without_the_open_switch(
    compat_factory: CompatFactory,
) -> None:
    client = await compat_factory(None)
    response = await client.get("/api/v1/status")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"  # the Watchword API's own 404
    assert "access-control-allow-origin" not in response.headers


async def test_open_mode_serves_everything_without_credentials_and_warns(
    compat_factory: CompatFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="watchword.compat_v1"):
        client = await compat_factory(None, open_mode="open")
    assert any("WITHOUT AUTHENTICATION" in r.getMessage() for r in caplog.records)
    assert (await client.get("/api/v1/status")).json() == {"status": "OK"}
    assert (await client.get("/api/v1/stats")).json() == {"users": 0}
    created = await client.post(
        "/api/v1/users", json={"email": "open@hbtn.io", "password": "long enough"}
    )
    assert created.status_code == 201
    assert_user_json(created.json(), "open@hbtn.io")
    assert len((await client.get("/api/v1/users")).json()) == 1
    # nobody is signed in: /users/me is the 404 of a None current_user
    assert_error(await client.get("/api/v1/users/me"), 404, "Not found")
    # no session strategy: no login route
    assert_error(await client.post("/api/v1/auth_session/login"), 404, "Not found")
    assert_error(await client.get("/api/v1/nope"), 404, "Not found")
    assert_error(await client.get("/api/v1/unauthorized"), 401, "Unauthorized")
    assert_error(await client.get("/api/v1/forbidden"), 403, "Forbidden")


# -- 0x01 tasks 0-5: status, stats, error handlers, plain Auth ------------------------------


async def test_task_0_status_is_compact_json_with_cors(compat_factory: CompatFactory) -> None:
    client = await compat_factory("auth")
    response = await client.get("/api/v1/status")
    assert response.status_code == 200
    assert response.content == b'{"status":"OK"}\n'
    assert response.headers["content-length"] == "16"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert (await client.get("/api/v1/status/")).json() == {"status": "OK"}


async def test_tasks_1_2_error_handlers(compat_factory: CompatFactory) -> None:
    client = await compat_factory("auth")
    for path in ("/api/v1/unauthorized", "/api/v1/unauthorized/"):
        assert_error(await client.get(path), 401, "Unauthorized")
    for path in ("/api/v1/forbidden", "/api/v1/forbidden/"):
        response = await client.get(path)
        assert_error(response, 403, "Forbidden")
        assert response.headers["content-length"] == "22"


async def test_task_5_plain_auth_is_401_then_403(compat_factory: CompatFactory) -> None:
    client = await compat_factory("auth")
    assert_error(await client.get("/api/v1/users"), 401, "Unauthorized")
    assert_error(
        await client.get("/api/v1/users", headers={"Authorization": "Test"}), 403, "Forbidden"
    )
    # stats is not excluded; an unknown path is authenticated before it is routed
    assert_error(await client.get("/api/v1/stats"), 401, "Unauthorized")
    assert_error(await client.get("/api/v1/nope"), 401, "Unauthorized")
    assert_error(await client.get("/api/v1/nope", headers={"Authorization": "x"}), 403, "Forbidden")
    response = await client.delete("/api/v1/status")  # excluded, so routing answers
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    # the session routes belong to session strategies only
    assert_error(await client.post("/api/v1/auth_session/login"), 404, "Not found")


@pytest.mark.parametrize("auth_type", ["auth", "basic_auth"])
async def test_the_base_or_basic_auth_type_never_knows_a_bad_header(
    compat_factory: CompatFactory, auth_type: str
) -> None:
    client = await compat_factory(auth_type)
    for header in ("Test", "Basic test", "Basic", "basic Ym9iQGhidG4uaW86SDBsYmVydG9uU2Nob29sOTgh"):
        assert_error(
            await client.get("/api/v1/users", headers={"Authorization": header}), 403, "Forbidden"
        )


# -- 0x01 tasks 6-12 and 0x02 task 0: Basic auth ---------------------------------------------


async def test_task_11_basic_auth_opens_the_api(compat_factory: CompatFactory) -> None:
    client = await compat_factory("basic_auth")
    bob = await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    assert (await client.get("/api/v1/status")).json() == {"status": "OK"}
    assert_error(await client.get("/api/v1/users"), 401, "Unauthorized")
    assert_error(
        await client.get("/api/v1/users", headers={"Authorization": "Test"}), 403, "Forbidden"
    )
    assert_error(
        await client.get("/api/v1/users", headers={"Authorization": "Basic test"}), 403, "Forbidden"
    )
    response = await client.get("/api/v1/users", headers={"Authorization": f"Basic {BOB_BASIC}"})
    assert response.status_code == 200
    users = response.json()
    assert len(users) == 1
    assert_user_json(users[0], BOB_EMAIL)
    assert users[0]["id"] == bob.id
    assert users[0]["created_at"] == bob.created_at.strftime("%Y-%m-%dT%H:%M:%S")
    # 0x02 task 0: /users/me
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Basic {BOB_BASIC}"})
    assert me.status_code == 200 and me.json() == users[0]
    # valid credentials reach routing: 404 and 405 come from it
    auth = {"Authorization": f"Basic {BOB_BASIC}"}
    assert_error(await client.get("/api/v1/nope", headers=auth), 404, "Not found")
    assert_error(await client.get("/api/v1/users/a/b", headers=auth), 404, "Not found")
    response = await client.patch("/api/v1/users", headers=auth)
    assert response.status_code == 405
    assert response.text == NOT_ALLOWED
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert response.headers["access-control-allow-origin"] == "*"
    options = await client.options("/api/v1/users/me", headers=auth)
    assert options.status_code == 200
    assert options.headers["allow"] == "GET, HEAD, PUT, DELETE, OPTIONS"
    head = await client.head("/api/v1/users/me", headers=auth)
    assert head.status_code == 200


async def test_task_12_passwords_with_colons(compat_factory: CompatFactory) -> None:
    client = await compat_factory("basic_auth")
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    await make_user(client.container, BOB100_EMAIL, BOB100_PASSWORD)
    response = await client.get("/api/v1/users", headers={"Authorization": f"Basic {BOB100_BASIC}"})
    assert response.status_code == 200
    assert sorted(u["email"] for u in response.json()) == sorted([BOB_EMAIL, BOB100_EMAIL])
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Basic {BOB100_BASIC}"})
    assert me.json()["email"] == BOB100_EMAIL


async def test_hostile_basic_headers_are_403_never_500(compat_factory: CompatFactory) -> None:
    client = await compat_factory("basic_auth")
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    not_utf8 = base64.b64encode(b"bob@hbtn.io:\xff\xfe\xfd").decode()
    hostile = [
        "Basic ",
        "Basic !!!!",
        "Basic ====",
        f"Basic {not_utf8}",
        "Basic " + base64.b64encode(b"no colon here").decode(),
        "Basic " + base64.b64encode(b":").decode(),
        "Basic " + base64.b64encode(b"bob@hbtn.io\x00:x").decode(),
        "Basic " + base64.b64encode(f"{BOB_EMAIL}:wrong".encode()).decode(),
        "Basic " + base64.b64encode(f"{BOB_EMAIL}:{'A' * 5000}".encode()).decode(),
        "Basic " + "QUFB" * 20_000,
        "Bearer " + BOB_BASIC,
    ]
    for header in hostile:
        response = await client.get("/api/v1/users", headers={"Authorization": header})
        assert_error(response, 403, "Forbidden")
    raw = await client.get("/api/v1/users", headers=[(b"Authorization", b"Basic \xff\xfe\x80")])
    assert_error(raw, 403, "Forbidden")
    # a disabled Watchword account is nobody here
    user = await client.container.accounts.find_user(BOB_EMAIL)
    await client.container.accounts.set_disabled(user.id, True, CLI, actor_id="test")
    assert_error(
        await client.get("/api/v1/users", headers={"Authorization": f"Basic {BOB_BASIC}"}),
        403,
        "Forbidden",
    )


async def test_failed_basic_passwords_spend_the_account_budget(
    compat_factory: CompatFactory,
) -> None:
    client = await compat_factory("basic_auth", login_rate_limit_account="3/minute")
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    wrong = basic(BOB_EMAIL, "not the password")
    for _ in range(3):
        assert_error(await client.get("/api/v1/users", headers=wrong), 403, "Forbidden")
    response = await client.get("/api/v1/users", headers=basic(BOB_EMAIL, BOB_PASSWORD))
    assert_error(response, 429, "Too many requests")
    assert int(response.headers["retry-after"]) >= 1


# -- users CRUD (the archive's views) ---------------------------------------------------------


@pytest.fixture
async def bob(compat_factory: CompatFactory) -> Client:
    client = await compat_factory("basic_auth")
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    client.headers["Authorization"] = f"Basic {BOB_BASIC}"
    return client


async def test_post_users_checks_in_the_exercise_order(bob: Client) -> None:
    post = bob.post
    assert_error(await post("/api/v1/users", content=b"email=a"), 400, "Wrong format")
    assert_error(
        await post("/api/v1/users", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "Wrong format",
    )
    assert_error(
        await post("/api/v1/users", content=b"\xff", headers={"Content-Type": "application/json"}),
        400,
        "Wrong format",
    )
    assert_error(await post("/api/v1/users", json=None), 400, "Wrong format")
    assert_error(await post("/api/v1/users", json=["a"]), 400, "Wrong format")
    assert_error(await post("/api/v1/users", json={"password": "x"}), 400, "email missing")
    assert_error(await post("/api/v1/users", json={"email": ""}), 400, "email missing")
    assert_error(await post("/api/v1/users", json={"email": "a@b.io"}), 400, "password missing")
    assert_error(
        await post("/api/v1/users", json={"email": "a@b.io", "password": ""}),
        400,
        "password missing",
    )
    assert (await bob.get("/api/v1/stats")).json() == {"users": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"email": BOB_EMAIL, "password": "another password"}, "already exists"),
        ({"email": " BOB@HBTN.IO ", "password": "another password"}, "already exists"),
        ({"email": "not-an-email", "password": "another password"}, "email address is not valid"),
        ({"email": 42, "password": "another password"}, "email address is not valid"),
        ('{"email": "\\ud800@hbtn.io", "password": "another password"}', "not valid"),
        ({"email": "new@hbtn.io", "password": "short"}, "at least 8 characters"),
        ({"email": "new@hbtn.io", "password": 12345678}, "password must be a string"),
        ('{"email": "new@hbtn.io", "password": "pass\\ud800word"}', "must be a string"),
        ({"email": "new@hbtn.io", "password": "long enough", "first_name": 3}, "first_name"),
        ({"email": "new@hbtn.io", "password": "long enough", "last_name": "x" * 201}, "last_name"),
    ],
)
async def test_post_users_refusals_are_cant_create_user(
    bob: Client, body: dict[str, object] | str, reason: str
) -> None:
    if isinstance(body, str):  # JSON text httpx cannot build (lone surrogates)
        response = await bob.post(
            "/api/v1/users", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = await bob.post("/api/v1/users", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert message.startswith("Can't create User: ") and reason in message, message
    assert (await bob.get("/api/v1/stats")).json() == {"users": 1}  # nothing written


async def test_users_crud_round_trip(bob: Client) -> None:
    created = await bob.post(
        "/api/v1/users",
        json={"email": "New@Hbtn.io", "password": "long enough", "first_name": "Bo"},
    )
    assert created.status_code == 201
    user = created.json()
    assert_user_json(user, "new@hbtn.io")  # a Watchword user: email normalised
    assert (user["first_name"], user["last_name"]) == ("Bo", None)
    stored = await bob.container.db.users.get(user["id"])
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    # the new user signs in with Basic right away
    me = await bob.get("/api/v1/users/me", headers=basic("new@hbtn.io", "long enough"))
    assert me.json()["id"] == user["id"]
    assert (await bob.get(f"/api/v1/users/{user['id']}")).json() == user
    assert (await bob.get(f"/api/v1/users/{user['id']}/")).json() == user
    assert len((await bob.get("/api/v1/users/")).json()) == 2
    # PUT: 404 first, then another user's account is refused, then the format, then only
    # the names given (the new user changes its own account).
    new = basic("new@hbtn.io", "long enough")
    assert_error(await bob.put("/api/v1/users/nope", json={"first_name": "x"}), 404, "Not found")
    assert_error(await bob.put("/api/v1/users/me", json={"first_name": "x"}), 404, "Not found")
    assert_error(await bob.put(f"/api/v1/users/{user['id']}", json={}), 403, "Forbidden")
    assert_error(
        await bob.put(f"/api/v1/users/{user['id']}", content=b"x", headers=new), 400, "Wrong format"
    )
    assert_error(
        await bob.put(f"/api/v1/users/{user['id']}", json={"first_name": 7}, headers=new),
        400,
        "Wrong format",
    )
    bob.container.clock.advance(5)  # type: ignore[attr-defined]
    updated = await bob.put(
        f"/api/v1/users/{user['id']}",
        json={"last_name": "Dylan", "email": "ignored@x.io"},
        headers=new,
    )
    assert updated.status_code == 200
    body = updated.json()
    assert (body["first_name"], body["last_name"], body["email"]) == ("Bo", "Dylan", "new@hbtn.io")
    assert body["updated_at"] > body["created_at"]
    me = await bob.get("/api/v1/users/me", headers=new)
    assert me.json()["last_name"] == "Dylan"
    # DELETE: {} then gone, and the user can no longer sign in
    assert_error(await bob.delete("/api/v1/users/nope"), 404, "Not found")
    assert_error(await bob.delete(f"/api/v1/users/{user['id']}"), 403, "Forbidden")
    deleted = await bob.delete(f"/api/v1/users/{user['id']}", headers=new)
    assert deleted.status_code == 200 and deleted.json() == {}
    assert_error(await bob.get(f"/api/v1/users/{user['id']}"), 404, "Not found")
    assert_error(await bob.get("/api/v1/users/me", headers=new), 403, "Forbidden")
    assert (await bob.get("/api/v1/stats")).json() == {"users": 1}


async def test_odd_user_ids_are_404(bob: Client) -> None:
    for user_id in ("x" * 300, "%00", "a%0Ab", "%C3%A9", "%FF"):
        assert_error(await bob.get(f"/api/v1/users/{user_id}"), 404, "Not found")
        assert_error(await bob.delete(f"/api/v1/users/{user_id}"), 404, "Not found")


async def test_store_down_fails_closed_with_503(
    bob: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(bob.container.db.users, "get_by_email", down)
    response = await bob.get("/api/v1/users")
    assert_error(response, 503, "Service unavailable")
    assert response.headers["retry-after"] == "1"
