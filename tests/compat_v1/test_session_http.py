"""0x02 through HTTP: session_auth, session_exp_auth, session_db_auth, on Watchword sessions."""

from __future__ import annotations

import httpx
import pytest

from tests.compat_v1.conftest import (
    BOB_BASIC,
    BOB_EMAIL,
    BOB_PASSWORD,
    SESSION_EMAIL,
    SESSION_NAME,
    SESSION_PASSWORD,
    CompatFactory,
    cookie,
    login,
    make_user,
)
from tests.conftest import Client
from tests.helpers import ManualClock
from watchword.domain.clock import sha256_hex
from watchword.services.context import CLI

SESSION_TYPES = ["session_auth", "session_exp_auth", "session_db_auth"]
NOT_ALLOWED = (
    "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n"
    "<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
)


def assert_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": text}
    assert response.headers["access-control-allow-origin"] == "*"


async def session_client(factory: CompatFactory, auth_type: str, **kwargs: object) -> Client:
    client = await factory(auth_type, **kwargs)
    await make_user(client.container, SESSION_EMAIL, SESSION_PASSWORD)
    return client


@pytest.mark.parametrize("auth_type", SESSION_TYPES)
async def test_tasks_1_and_5_before_request(compat_factory: CompatFactory, auth_type: str) -> None:
    client = await session_client(compat_factory, auth_type)
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    assert (await client.get("/api/v1/status")).json() == {"status": "OK"}
    assert (await client.get("/api/v1/status/")).json() == {"status": "OK"}
    assert_error(await client.get("/api/v1/users"), 401, "Unauthorized")
    assert_error(
        await client.get("/api/v1/users", headers={"Authorization": "Test"}), 403, "Forbidden"
    )
    assert_error(await client.get("/api/v1/users/me"), 401, "Unauthorized")
    # Basic credentials mean nothing to a session strategy
    assert_error(
        await client.get("/api/v1/users/me", headers={"Authorization": f"Basic {BOB_BASIC}"}),
        403,
        "Forbidden",
    )
    unknown = cookie("5535d4d7-3d77-4d06-8281-495dc3acfe76")
    assert_error(await client.get("/api/v1/users/me", headers=unknown), 403, "Forbidden")
    # the login path is excluded: a GET there is routed, hence 405, without credentials
    for path in ("/api/v1/auth_session/login", "/api/v1/auth_session/login/"):
        response = await client.get(path)
        assert response.status_code == 405
        assert response.text == NOT_ALLOWED
        assert response.headers["allow"] == "POST, OPTIONS"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["access-control-allow-origin"] == "*"
    # logout is not excluded: 401 without a cookie, 403 with a stale one
    assert_error(await client.delete("/api/v1/auth_session/logout"), 401, "Unauthorized")
    assert_error(
        await client.delete("/api/v1/auth_session/logout", headers=unknown), 403, "Forbidden"
    )
    assert_error(await client.get("/api/v1/nope"), 401, "Unauthorized")
    assert_error(await client.get("/api/v1"), 401, "Unauthorized")
    assert_error(await client.get("/api/v1/a%0Ab"), 401, "Unauthorized")


@pytest.mark.parametrize("auth_type", SESSION_TYPES)
async def test_task_7_login_checks_in_order(compat_factory: CompatFactory, auth_type: str) -> None:
    client = await session_client(compat_factory, auth_type)
    url = "/api/v1/auth_session/login"
    assert_error(await client.post(url), 400, "email missing")
    assert_error(await client.post(url, json={"email": SESSION_EMAIL}), 400, "email missing")
    assert_error(await client.post(url, data={"email": ""}), 400, "email missing")
    assert_error(
        await client.post(url, data={"email": "guillaume@hbtn.io"}), 400, "password missing"
    )
    assert_error(
        await client.post(url, data={"email": "guillaume@hbtn.io", "password": ""}),
        400,
        "password missing",
    )
    assert_error(
        await client.post(url, data={"email": "guillaume@hbtn.io", "password": "test"}),
        404,
        "no user found for this email",
    )
    assert_error(
        await client.post(url, data={"email": "not an email", "password": "test"}),
        404,
        "no user found for this email",
    )
    assert_error(
        await client.post(url, data={"email": SESSION_EMAIL, "password": "test"}),
        401,
        "wrong password",
    )
    assert_error(
        await client.post(url, data={"email": SESSION_EMAIL, "password": "x" * 5000}),
        401,
        "wrong password",
    )
    # multipart works like the form it is; a broken multipart body is an empty form
    multipart = await client.post(
        url + "/", files={"email": (None, SESSION_EMAIL), "password": (None, SESSION_PASSWORD)}
    )
    assert multipart.status_code == 200
    broken = await client.post(
        url, content=b"--x\r\nbad", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert_error(broken, 400, "email missing")
    assert "set-cookie" not in broken.headers


@pytest.mark.parametrize("auth_type", SESSION_TYPES)
async def test_tasks_7_8_login_me_logout(compat_factory: CompatFactory, auth_type: str) -> None:
    client = await session_client(compat_factory, auth_type)
    response = await client.post(
        "/api/v1/auth_session/login", data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD}
    )
    assert response.status_code == 200
    user = response.json()
    assert list(user) == ["created_at", "email", "first_name", "id", "last_name", "updated_at"]
    assert user["email"] == SESSION_EMAIL
    assert response.headers["access-control-allow-origin"] == "*"
    set_cookie = response.headers.get_list("set-cookie")
    assert len(set_cookie) == 1
    session_id = set_cookie[0].removeprefix(f"{SESSION_NAME}=").removesuffix("; Path=/")
    assert set_cookie[0] == f"{SESSION_NAME}={session_id}; Path=/"
    assert len(session_id) == 36 and session_id[14] == "4"
    client.cookies.clear()
    # only the SHA-256 of the id is stored
    row = await client.container.db.sessions.get_by_secret_hash(sha256_hex(session_id))
    assert row is not None and row.user_id == user["id"]
    assert row.kind == ("compat" if auth_type == "session_db_auth" else "compat-memory")
    assert row.id != session_id
    events = await client.container.db.audit.for_user(user["id"])
    succeeded = [e for e in events if e.type == "login.succeeded"]
    assert [e.session_id for e in succeeded] == [row.id]
    assert succeeded[0].details["surface"] == "api/v1"
    assert session_id not in str([e.public() for e in events])  # never a secret
    me = await client.get("/api/v1/users/me", headers=cookie(session_id))
    assert me.status_code == 200 and me.json() == user
    assert (await client.get("/api/v1/users", headers=cookie(session_id))).status_code == 200
    # GET on logout with a valid cookie passes before_request, then is 405
    wrong_method = await client.get("/api/v1/auth_session/logout", headers=cookie(session_id))
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "DELETE, OPTIONS"
    assert_error(await client.get("/api/v1/nope", headers=cookie(session_id)), 404, "Not found")
    logout = await client.delete("/api/v1/auth_session/logout/", headers=cookie(session_id))
    assert logout.status_code == 200 and logout.json() == {}
    assert "set-cookie" not in logout.headers
    assert_error(await client.get("/api/v1/users/me", headers=cookie(session_id)), 403, "Forbidden")
    assert_error(
        await client.delete("/api/v1/auth_session/logout", headers=cookie(session_id)),
        403,
        "Forbidden",
    )
    revoked = await client.container.db.sessions.get(row.id)
    assert revoked is not None and revoked.revoked_reason == "logout"


@pytest.mark.parametrize("auth_type", SESSION_TYPES)
async def test_forged_cookies_are_403(compat_factory: CompatFactory, auth_type: str) -> None:
    client = await session_client(compat_factory, auth_type)
    real = await login(client)
    forged = [
        "Hello",
        "C is fun",
        real.upper(),
        real[:-1],
        "x" * 10_000,
        "\u00e9\u00e8",
        '"quoted"',
    ]
    for value in forged:
        headers = {"Cookie": f"{SESSION_NAME}={value}".encode()}
        assert_error(await client.get("/api/v1/users/me", headers=headers), 403, "Forbidden")
    # a cookie under another name is no cookie at all
    assert_error(
        await client.get("/api/v1/users/me", headers={"Cookie": f"other={real}"}),
        401,
        "Unauthorized",
    )
    assert_error(
        await client.get("/api/v1/users/me", headers={"Cookie": "_my_session_id_fake"}),
        401,
        "Unauthorized",
    )
    # a Watchword cookie secret is not an /api/v1 session id
    await make_user(client.container, "alice@example.com", "correct horse battery staple")
    await client.login()
    watchword_secret = client.cookies[client.container.settings.effective_cookie_name]
    client.cookies.clear()
    assert_error(
        await client.get("/api/v1/users/me", headers=cookie(watchword_secret)), 403, "Forbidden"
    )
    assert (await client.get("/api/v1/users/me", headers=cookie(real))).status_code == 200


async def test_session_name_names_the_cookie(compat_factory: CompatFactory) -> None:
    client = await session_client(compat_factory, "session_auth", session_name="sid")
    response = await client.post(
        "/api/v1/auth_session/login", data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD}
    )
    name, _, rest = response.headers["set-cookie"].partition("=")
    assert name == "sid" and rest.endswith("; Path=/")
    client.cookies.clear()
    session_id = rest.removesuffix("; Path=/")
    assert (
        await client.get("/api/v1/users/me", headers=cookie(session_id, "sid"))
    ).status_code == 200
    assert_error(
        await client.get("/api/v1/users/me", headers=cookie(session_id)), 401, "Unauthorized"
    )


async def test_a_compat_session_id_does_not_open_the_watchword_api(
    compat_factory: CompatFactory,
) -> None:
    client = await session_client(compat_factory, "session_db_auth")
    session_id = await login(client)
    name = client.container.settings.effective_cookie_name
    # Twice: read from the store, then from memory (the first read keeps the session).
    for _ in range(2):
        response = await client.get("/v1/me", headers={"Cookie": f"{name}={session_id}"})
        assert response.status_code == 401


# -- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_type", ["session_exp_auth", "session_db_auth"])
async def test_task_9_expiry_is_absolute_and_the_boundary_is_valid(
    compat_factory: CompatFactory, clock: ManualClock, auth_type: str
) -> None:
    client = await session_client(compat_factory, auth_type, duration="60")
    session_id = await login(client)
    me = "/api/v1/users/me"
    clock.advance(10)
    assert (await client.get(me, headers=cookie(session_id))).status_code == 200
    clock.advance(50)  # exactly created_at + 60 s: still valid; use does not extend it
    assert (await client.get(me, headers=cookie(session_id))).status_code == 200
    clock.advance(0.001)
    assert_error(await client.get(me, headers=cookie(session_id)), 403, "Forbidden")
    # the expired session is not listed as live either
    user = await client.container.accounts.find_user(SESSION_EMAIL)
    assert await client.container.sessions.list_live(user.id) == []
    # a new login works and gets its own 60 seconds
    fresh = await login(client)
    clock.advance(61)
    assert_error(await client.get(me, headers=cookie(fresh)), 403, "Forbidden")


@pytest.mark.parametrize("auth_type", ["session_exp_auth", "session_db_auth"])
@pytest.mark.parametrize("duration", [None, "0", "-10", "abc", "60.5"])
async def test_no_duration_means_no_expiry(
    compat_factory: CompatFactory, clock: ManualClock, auth_type: str, duration: str | None
) -> None:
    client = await session_client(compat_factory, auth_type, duration=duration)
    session_id = await login(client)
    clock.advance(400 * 86_400)  # far past Watchword's own idle timeout and lifetime
    assert (await client.get("/api/v1/users/me", headers=cookie(session_id))).status_code == 200


async def test_session_auth_ignores_the_duration(
    compat_factory: CompatFactory, clock: ManualClock
) -> None:
    client = await session_client(compat_factory, "session_auth", duration="60")
    session_id = await login(client)
    clock.advance(86_400)
    assert (await client.get("/api/v1/users/me", headers=cookie(session_id))).status_code == 200


# -- one session model ------------------------------------------------------------------------


@pytest.mark.parametrize("auth_type", SESSION_TYPES)
async def test_sessions_are_listed_and_revocable_in_the_watchword_api(
    compat_factory: CompatFactory, auth_type: str
) -> None:
    client = await session_client(compat_factory, auth_type)
    session_id = await login(client)
    await client.login(SESSION_EMAIL, SESSION_PASSWORD)
    listed = (await client.get("/v1/sessions")).json()["sessions"]
    compat = [s for s in listed if s["kind"].startswith("compat")]
    assert len(compat) == 1
    revoke = await client.delete(f"/v1/sessions/{compat[0]['id']}")
    assert revoke.status_code == 200, revoke.text
    saved = dict(client.cookies)
    client.cookies.clear()
    assert_error(await client.get("/api/v1/users/me", headers=cookie(session_id)), 403, "Forbidden")
    client.cookies.update(saved)
    listed = (await client.get("/v1/sessions")).json()["sessions"]
    assert [s["kind"] for s in listed] == ["cookie"]


async def test_sign_out_everywhere_and_disabling_end_compat_sessions(
    compat_factory: CompatFactory,
) -> None:
    client = await session_client(compat_factory, "session_db_auth")
    first = await login(client)
    user = await client.container.accounts.find_user(SESSION_EMAIL)
    await client.container.sessions.revoke_all(user.id, "admin", CLI)
    assert_error(await client.get("/api/v1/users/me", headers=cookie(first)), 403, "Forbidden")
    second = await login(client)
    await client.container.accounts.set_disabled(user.id, True, CLI, actor_id="test")
    assert_error(await client.get("/api/v1/users/me", headers=cookie(second)), 403, "Forbidden")
    assert_error(
        await client.post(
            "/api/v1/auth_session/login",
            data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD},
        ),
        403,
        "Forbidden",
    )


async def test_deleting_a_user_ends_its_sessions(compat_factory: CompatFactory) -> None:
    client = await session_client(compat_factory, "session_auth")
    await make_user(client.container, BOB_EMAIL, BOB_PASSWORD)
    bob = await login(client, BOB_EMAIL, BOB_PASSWORD)
    mine = await login(client)
    me = (await client.get("/api/v1/users/me", headers=cookie(bob))).json()
    # Another plain user may not delete bob; bob may delete himself.
    refused = await client.delete(f"/api/v1/users/{me['id']}", headers=cookie(mine))
    assert_error(refused, 403, "Forbidden")
    deleted = await client.delete(f"/api/v1/users/{me['id']}", headers=cookie(bob))
    assert deleted.status_code == 200 and deleted.json() == {}
    assert_error(await client.get("/api/v1/users/me", headers=cookie(bob)), 403, "Forbidden")
    assert (await client.get("/api/v1/users/me", headers=cookie(mine))).status_code == 200


async def test_login_is_throttled_per_account(compat_factory: CompatFactory) -> None:
    client = await session_client(
        compat_factory, "session_auth", login_rate_limit_account="2/minute"
    )
    url = "/api/v1/auth_session/login"
    for _ in range(2):
        assert_error(
            await client.post(url, data={"email": SESSION_EMAIL, "password": "nope"}),
            401,
            "wrong password",
        )
    response = await client.post(url, data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD})
    assert_error(response, 429, "Too many requests")
    assert "set-cookie" not in response.headers


# -- restarts in one process: the same database, a new app ------------------------------------


async def test_a_restart_forgets_memory_sessions_and_keeps_database_ones(
    compat_factory: CompatFactory,
) -> None:
    memory = await session_client(compat_factory, "session_exp_auth")
    forgotten = await login(memory)
    assert (await memory.get("/api/v1/users/me", headers=cookie(forgotten))).status_code == 200
    # the next process on the same database, this time persisting sessions
    db = await compat_factory("session_db_auth")
    kept = await login(db)
    assert_error(await db.get("/api/v1/users/me", headers=cookie(forgotten)), 403, "Forbidden")
    user = await db.container.accounts.find_user(SESSION_EMAIL)
    live = await db.container.sessions.list_live(user.id)
    assert [s.kind for s, _ in live] == ["compat"]
    # and the one after it still knows the database session
    again = await compat_factory("session_db_auth")
    assert (await again.get("/api/v1/users/me", headers=cookie(kept))).status_code == 200
    assert_error(await again.get("/api/v1/users/me", headers=cookie(forgotten)), 403, "Forbidden")
