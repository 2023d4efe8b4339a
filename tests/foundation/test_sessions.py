"""The signed-in user, sign-out, session management, expiry and the session limit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from unittest import mock

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.foundation.conftest import set_cookie
from tests.helpers import PASSWORD, LateReads, ManualClock, cookie_header
from watchword.domain.audit import AuditType
from watchword.domain.events import session_revoked
from watchword.domain.sessions import RevokeReason
from watchword.stores.base import CONTROL_PAGE

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


async def second_device(client: Client, user_agent: str = IPHONE, **extra: Any) -> Client:
    """Another browser of the same user on the same app."""
    other = Client(transport=client._transport, base_url=str(client.base_url))
    other.container = client.container
    other.headers["User-Agent"] = user_agent
    await other.login(**extra)
    return other


# -- /v1/me and sign-out ---------------------------------------------------------------------


async def test_me_returns_the_user_the_session_and_how_the_caller_authenticated(
    client: Client,
) -> None:
    user = await client.register()
    login = await client.login(device_name="work laptop")
    response = await client.get("/v1/me")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["user"]["id"] == user["id"]
    assert body["session"]["id"] == login.json()["session"]["id"]
    assert body["session"]["current"] is True
    assert body["session"]["device"]["name"] == "work laptop"
    assert body["authentication"]["method"] == "cookie"
    assert body["authentication"]["kind"] == "user"
    assert "sessions" in body["authentication"]["scopes"]
    assert body["csrf_token"] == login.json()["csrf_token"]


async def test_me_without_a_cookie_is_401(client: Client) -> None:
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_logout_ends_the_session_server_side_and_clears_the_cookie(client: Client) -> None:
    await client.register()
    login = await client.login()
    session_id = login.json()["session"]["id"]
    old = cookie_header(client)
    response = await client.post("/v1/auth/logout")
    assert response.status_code == 200 and response.json() == {"status": "signed_out"}
    assert response.headers["cache-control"] == "no-store"
    name, value, attributes = set_cookie(response)
    assert name == "watchword_session" and value == ""
    assert attributes.get("max-age") == "0" and attributes["path"] == "/"
    stored = await client.container.db.sessions.get(session_id)
    assert stored is not None and stored.revoked_reason == RevokeReason.LOGOUT
    client.cookies.clear()
    replay = await client.get("/v1/me", headers=old)
    assert replay.status_code == 401 and replay.json()["error"] == "session_revoked"
    again = await client.post("/v1/auth/logout", headers=old)
    assert again.status_code == 401
    events = await client.container.db.audit.for_user(stored.user_id, limit=1)
    assert events[0].type == AuditType.LOGOUT and events[0].session_id == session_id


async def test_logout_reaches_every_node_through_the_control_feed(
    client_factory: ClientFactory,
) -> None:
    node_a = await client_factory()
    node_b = await client_factory()  # same database, another process's caches
    await node_a.register()
    await node_a.login()
    cookie = cookie_header(node_a)
    assert (await node_b.get("/v1/me", headers=cookie)).status_code == 200  # cached on B
    assert (await node_a.post("/v1/auth/logout")).status_code == 200
    await node_b.container.control.poll_once()
    replay = await node_b.get("/v1/me", headers=cookie)
    assert replay.status_code == 401 and replay.json()["error"] == "session_revoked"


async def test_the_control_feed_is_read_to_its_end_page_after_page(client: Client) -> None:
    """Readers stop at the first short page: more rows than a page still all arrive."""
    container = client.container
    await container.control.poll_once()  # both readers at the feed's end
    await container.tokens.revocations.read_once()
    count = CONTROL_PAGE + 3
    expires = container.clock.now().timestamp() + 600
    await container.db.control.append(
        [session_revoked(f"s{i}", "u", "logout", expires) for i in range(count)],
        container.clock.now(),
        origin="another-node",
    )
    assert await container.control.poll_once() == count
    assert await container.tokens.revocations.read_once() == count
    assert {"s0", f"s{count - 1}"} <= set(container.control.revoked)


# -- listing and revoking ---------------------------------------------------------------------


async def test_sessions_list_shows_devices_and_which_one_is_current(client: Client) -> None:
    await client.register()
    client.headers["User-Agent"] = FIREFOX
    mine = (await client.login(device_name="desk")).json()["session"]["id"]
    phone = await second_device(client)
    response = await client.get("/v1/sessions")
    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert len(sessions) == 2
    by_id = {s["id"]: s for s in sessions}
    assert by_id[mine]["current"] is True
    assert by_id[mine]["device"]["name"] == "desk"
    assert by_id[mine]["device"]["browser"] == "Firefox"
    assert by_id[mine]["device"]["os"] == "Linux"
    other = next(s for s in sessions if s["id"] != mine)
    assert other["current"] is False
    assert other["device"]["os"] == "iOS" and other["device"]["browser"] == "Mobile Safari"
    assert other["ip"] == "127.0.0.1"
    for field in ("created_at", "last_seen_at", "expires_at", "absolute_expires_at"):
        datetime.fromisoformat(other[field])
    assert sessions[0]["created_at"] >= sessions[1]["created_at"]
    await phone.aclose()


async def test_delete_one_of_my_sessions(client: Client) -> None:
    await client.register()
    await client.login()
    phone = await second_device(client)
    phone_id = (await phone.get("/v1/me")).json()["session"]["id"]
    response = await client.delete(f"/v1/sessions/{phone_id}")
    assert response.status_code == 200
    assert response.json() == {"status": "revoked", "session_id": phone_id}
    rejected = await phone.get("/v1/me")
    assert rejected.status_code == 401 and rejected.json()["error"] == "session_revoked"
    assert (await client.delete(f"/v1/sessions/{phone_id}")).status_code == 404
    me = (await client.get("/v1/me")).json()
    events = await client.container.db.audit.for_user(me["user"]["id"], limit=1)
    assert events[0].type == AuditType.SESSION_REVOKED and events[0].session_id == phone_id
    assert events[0].actor_id == me["user"]["id"] and events[0].ip == "127.0.0.1"
    assert events[0].user_agent == client.headers["User-Agent"]
    assert [s["id"] for s in (await client.get("/v1/sessions")).json()["sessions"]] != [phone_id]


async def test_deleting_another_users_session_is_404_and_changes_nothing(client: Client) -> None:
    await client.register("alice@example.com")
    await client.register("bob@example.com")
    bob = await second_device(client, email="bob@example.com")
    bob_session = (await bob.get("/v1/me")).json()["session"]["id"]
    await client.login("alice@example.com")
    response = await client.delete(f"/v1/sessions/{bob_session}")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    unknown = await client.delete("/v1/sessions/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == response.json()["message"]
    assert (await bob.get("/v1/me")).status_code == 200
    stored = await client.container.db.sessions.get(bob_session)
    assert stored is not None and stored.revoked_at is None


async def test_revoke_others_keeps_only_the_current_session(client: Client) -> None:
    user = await client.register()
    mine = (await client.login()).json()["session"]["id"]
    others = [await second_device(client) for _ in range(3)]
    response = await client.post("/v1/sessions/revoke-others")
    assert response.status_code == 200
    assert len(response.json()["revoked_sessions"]) == 3
    for other in others:
        assert (await other.get("/v1/me")).status_code == 401
    assert [s["id"] for s in (await client.get("/v1/sessions")).json()["sessions"]] == [mine]
    events = await client.container.db.audit.for_user(user["id"], limit=1)
    assert events[0].type == AuditType.SESSIONS_REVOKED and events[0].session_id == mine
    # Nothing left to revoke: no second audit row saying "revoked nothing".
    again = await client.post("/v1/sessions/revoke-others")
    assert again.status_code == 200 and again.json()["revoked_sessions"] == []
    assert (await client.container.db.audit.for_user(user["id"], limit=1))[0].id == events[0].id


# -- password change --------------------------------------------------------------------------


async def test_password_change_revokes_every_other_session(client: Client) -> None:
    user = await client.register()
    await client.login()
    phone = await second_device(client)
    response = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["revoked_sessions"]) == ("password_changed", 1)
    assert "set-cookie" in response.headers and body["csrf_token"]
    # This session continues re-keyed (the client keeps the new cookie).
    assert (await client.get("/v1/me")).json()["session"]["id"] == body["session_id"]
    assert (await phone.get("/v1/me")).json()["error"] == "session_revoked"
    old = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    await client.login(password="a brand new passphrase")
    types = [e.type for e in await client.container.db.audit.for_user(user["id"], limit=10)]
    assert AuditType.PASSWORD_CHANGED in types


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"current_password": "wrong password", "new_password": "a brand new one"}, 401, None),
        ({"current_password": PASSWORD, "new_password": "short"}, 422, "weak_password"),
        ({"current_password": PASSWORD}, 422, "validation_error"),
    ],
)
async def test_a_refused_password_change_changes_nothing(
    client: Client, body: dict[str, str], status: int, code: str | None
) -> None:
    user = await client.register()
    await client.login()
    phone = await second_device(client)
    before = await client.container.db.users.get(user["id"])
    response = await client.post("/v1/me/password", json=body)
    assert response.status_code == status
    if code:
        assert response.json()["error"] == code
    assert await client.container.db.users.get(user["id"]) == before
    assert (await phone.get("/v1/me")).status_code == 200
    assert (await client.get("/v1/me")).status_code == 200


# -- expiry -----------------------------------------------------------------------------------


async def test_idle_timeout(client_factory: ClientFactory, clock: ManualClock) -> None:
    client = await client_factory(session_idle_timeout=600, session_lifetime=3600)
    await client.register()
    await client.login()
    for _ in range(3):
        clock.advance(599)
        assert (await client.get("/v1/me")).status_code == 200  # activity slides the window
    clock.advance(600)
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json() == {"error": "session_expired", "message": "The session timed out."}
    assert (await client.get("/v1/sessions")).status_code == 401


async def test_idle_timeout_counts_from_the_last_persisted_activity_on_another_node(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    node_a = await client_factory(session_idle_timeout=600, session_lifetime=3600)
    await node_a.register()
    await node_a.login()
    clock.advance(500)
    assert (await node_a.get("/v1/me")).status_code == 200
    await node_a.container.sessions.flush_touches()
    node_b = await client_factory(session_idle_timeout=600, session_lifetime=3600)
    clock.advance(500)  # 1000 s after login, 500 s after the last activity
    assert (await node_b.get("/v1/me", headers=cookie_header(node_a))).status_code == 200


async def test_absolute_lifetime(client_factory: ClientFactory, clock: ManualClock) -> None:
    client = await client_factory(session_idle_timeout=600, session_lifetime=1800)
    await client.register()
    await client.login()
    for _ in range(5):
        clock.advance(350)
        assert (await client.get("/v1/me")).status_code == 200
    clock.advance(100)  # 1850 s after sign-in, active all along
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json() == {"error": "session_expired", "message": "The session has expired."}


async def test_a_session_ends_at_its_expiry_to_the_second_while_in_use(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    """Between two moves of last-seen (a second apart), a request compares one precomputed
    instant: an expiry that falls inside that second still counts at once."""
    client = await client_factory(session_idle_timeout=600, session_lifetime=1800)
    await client.register()
    await client.login()
    for _ in range(5):  # in use all along, so never idle
        clock.advance(350)
        assert (await client.get("/v1/me")).status_code == 200
    clock.advance(49.4)  # 1799.4 s after sign-in
    assert (await client.get("/v1/me")).status_code == 200  # last-seen moves here
    clock.advance(0.5)  # 1799.9 s: still live, and last-seen stays where it was
    assert (await client.get("/v1/me")).status_code == 200
    clock.advance(0.2)  # 1800.1 s: past the lifetime, within a second of the last move
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"] == "session_expired"


def test_the_expiry_defaults_follow_asvs_level_2() -> None:
    from watchword.config import Settings

    settings = Settings()
    assert settings.session_idle_timeout == 30 * 60
    assert settings.session_lifetime == 12 * 3600


class CountingSessionStore:
    """Wraps the real session store and counts ``touch`` calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.touches: list[dict[str, datetime]] = []

    async def touch(self, last_seen: Mapping[str, datetime]) -> None:
        self.touches.append(dict(last_seen))
        await self._inner.touch(last_seen)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_last_seen_writes_are_coalesced(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(session_touch_interval=60)
    await client.register()
    session_id = (await client.login()).json()["session"]["id"]
    counting = CountingSessionStore(client.container.db.sessions)
    service = client.container.sessions
    service._db = _DbWith(client.container.db, counting)  # type: ignore[assignment]
    for _ in range(30):
        assert (await client.get("/v1/me")).status_code == 200
    await service.flush_touches()
    assert counting.touches == []  # nothing worth writing within the touch interval
    clock.advance(61)
    for _ in range(30):
        assert (await client.get("/v1/me")).status_code == 200
    clock.advance(10)
    for _ in range(30):
        assert (await client.get("/v1/me")).status_code == 200
    await service.flush_touches()
    await service.flush_touches()
    assert len(counting.touches) == 1
    assert counting.touches[0] == {session_id: clock.now() - _seconds(10)}
    stored = await client.container.db.sessions.get(session_id)
    assert stored is not None and stored.last_seen_at == clock.now() - _seconds(10)
    # The list shows the freshest last-seen time this node knows.
    listed = (await client.get("/v1/sessions")).json()["sessions"][0]
    assert datetime.fromisoformat(listed["last_seen_at"]) == clock.now()


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


class _DbWith:
    def __init__(self, db: Any, sessions: Any) -> None:
        self._db = db
        self.sessions = sessions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


# -- the session limit ------------------------------------------------------------------------


async def test_session_limit_evict_oldest(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(max_sessions_per_user=2)
    user = await client.register()
    first = await second_device(client)
    clock.advance(1)
    second = await second_device(client)
    clock.advance(1)
    third = await second_device(client)
    rejected = await first.get("/v1/me")
    assert rejected.status_code == 401 and rejected.json()["error"] == "session_revoked"
    assert (await second.get("/v1/me")).status_code == 200
    assert len((await third.get("/v1/sessions")).json()["sessions"]) == 2
    events = await client.container.db.audit.for_user(user["id"])
    assert AuditType.SESSION_EVICTED in [e.type for e in events]


async def test_session_limit_reject_answers_409_and_sets_no_cookie(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(max_sessions_per_user=2, session_limit_policy="reject")
    await client.register()
    first = await second_device(client)
    await second_device(client)
    response = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "session_limit_reached"
    assert "sign out another device" in response.json()["message"]
    assert "set-cookie" not in response.headers
    assert (await first.get("/v1/me")).status_code == 200
    # Signing one out makes room.
    assert (await first.post("/v1/auth/logout")).status_code == 200
    await client.login()


@pytest.mark.parametrize("policy", ["evict-oldest", "reject"])
async def test_session_limit_holds_under_concurrent_logins(
    client_factory: ClientFactory, policy: str
) -> None:
    client = await client_factory(max_sessions_per_user=3, session_limit_policy=policy)
    user = await client.register()

    async def login() -> httpx.Response:
        return await client.post(
            "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
        )

    responses = await asyncio.gather(*(login() for _ in range(12)))
    statuses = sorted(r.status_code for r in responses)
    if policy == "reject":
        assert statuses == [200] * 3 + [409] * 9
    else:
        assert statuses == [200] * 12
    live = await client.container.db.sessions.list_live(user["id"], client.container.clock.now())
    assert len(live) == 3


async def test_sessions_endpoints_need_a_session(client: Client) -> None:
    for method, path in [
        ("GET", "/v1/sessions"),
        ("DELETE", "/v1/sessions/abc"),
        ("POST", "/v1/sessions/revoke-others"),
        ("POST", "/v1/me/password"),
        ("GET", "/v1/me/events"),
        ("POST", "/v1/auth/logout"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthenticated"


# -- sweeping and secrets in logs -------------------------------------------------------------


async def test_expired_and_old_revoked_rows_are_swept_in_the_background(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(session_lifetime=3600, sweep_interval=0.05)
    user = await client.register()
    await client.login()
    await client.post("/v1/auth/logout")
    await client.login()
    db = client.container.db
    assert len(await db.sessions.list_live(user["id"], clock.now())) == 1
    clock.advance(3600 + 86_400 + 1)  # past the lifetime and the day revoked rows are kept
    keeper = Client(transport=client._transport, base_url=str(client.base_url))
    keeper_id = (await keeper.login()).json()["session"]["id"]
    for _ in range(400):
        if [s.id for s in await _all_sessions(client)] == [keeper_id]:
            break
        await asyncio.sleep(0.02)
    assert [s.id for s in await _all_sessions(client)] == [keeper_id]
    assert (await keeper.get("/v1/me")).status_code == 200


async def _all_sessions(client: Client) -> list[Any]:
    from sqlalchemy import select

    from watchword.stores.sql import tables as t

    async with client.container.db.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(select(t.sessions.c.id))
        return list(rows)


async def test_the_cookie_secret_never_reaches_logs_or_reprs(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    await client.register()
    login = await client.login()
    _, secret, _ = set_cookie(login)
    await client.get("/v1/me")
    await client.post("/v1/auth/logout")
    assert all(secret not in record.getMessage() for record in caplog.records)
    signin = await client.container.accounts.login(
        email="alice@example.com", password=PASSWORD, ctx=_ctx()
    )
    assert signin.new.secret is not None and signin.new.secret not in repr(signin)
    assert PASSWORD not in repr(signin) and signin.user.password_hash not in repr(signin)


def _ctx() -> Any:
    from watchword.services.context import CLI

    return CLI


async def test_guessing_the_current_password_is_rate_limited(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(login_rate_limit_account="2/minute")
    await client.register()
    await client.login()
    wrong = {"current_password": "guess number one", "new_password": "a brand new passphrase"}
    for _ in range(2):
        assert (await client.post("/v1/me/password", json=wrong)).status_code == 401
    limited = await client.post("/v1/me/password", json=wrong)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    right = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    assert (await client.post("/v1/me/password", json=right)).status_code == 429
    user = await client.container.accounts.find_user("alice@example.com")
    events = await client.container.db.audit.for_user(user.id, limit=5)
    assert AuditType.PASSWORD_CHANGED not in [e.type for e in events]


async def test_requests_that_miss_the_session_cache_together_share_one_store_read(
    client: Client,
) -> None:
    await client.register()
    await client.login()
    container = client.container
    store = container.db.sessions
    reads = LateReads(store.get_by_secret_hash)
    container.sessions.cache.clear()
    with mock.patch.object(store, "get_by_secret_hash", reads):
        answers = await asyncio.gather(*(client.get("/v1/me") for _ in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert reads.calls == 1
