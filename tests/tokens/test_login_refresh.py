"""Token sign-in, bearer use, refresh rotation, reuse detection and its grace window."""

from __future__ import annotations

import asyncio

import jwt

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.tokens.helpers import bearer, me, refresh, token_login
from watchword.domain.audit import AuditType
from watchword.domain.clock import sha256_hex
from watchword.services.context import CLI


async def test_token_login_answers_a_pair_and_sets_no_cookie(client: Client) -> None:
    await client.register()
    response = await client.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": "correct horse battery staple",
            "mode": "token",
        },
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["refresh_token"].startswith("wwr_")
    assert body["user"]["email"] == "alice@example.com"
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "EdDSA"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sid"] == body["session_id"]
    assert claims["aud"] == "watchword"
    assert claims["iss"] == "http://127.0.0.1:8000"
    assert claims["exp"] - claims["iat"] == 600
    assert "profile" in claims["scope"].split()
    assert claims["roles"] == ["user"]
    session = await client.container.db.sessions.get(body["session_id"])
    assert session is not None and session.kind == "token" and session.secret_hash is None


async def test_bearer_reaches_me_without_csrf(client: Client) -> None:
    user = await client.register()
    pair = await token_login(client)
    response = await me(client, pair["access_token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == user["id"]
    assert body["authentication"]["method"] == "bearer_jwt"
    assert body["authentication"]["session_id"] == pair["session_id"]
    # An unsafe request with a bearer needs no CSRF token.
    response = await client.post("/v1/auth/logout", headers=bearer(pair["access_token"]))
    assert response.status_code == 200, response.text
    response = await me(client, pair["access_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "revoked" in response.headers["www-authenticate"]


async def test_token_sessions_are_listed_like_cookie_sessions(client: Client) -> None:
    await client.register()
    pair = await token_login(client, device_name="phone")
    response = await client.get("/v1/sessions", headers=bearer(pair["access_token"]))
    assert response.status_code == 200, response.text
    sessions = response.json()["sessions"]
    assert [s["id"] for s in sessions] == [pair["session_id"]]
    assert sessions[0]["kind"] == "token" and sessions[0]["current"] is True


async def test_refresh_rotates_and_the_new_pair_works(client: Client, clock: ManualClock) -> None:
    await client.register()
    pair = await token_login(client)
    clock.advance(60)
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    fresh = response.json()
    assert fresh["refresh_token"] != pair["refresh_token"]
    assert fresh["access_token"] != pair["access_token"]
    assert fresh["session_id"] == pair["session_id"]
    assert (await me(client, fresh["access_token"])).status_code == 200
    # The new refresh token rotates in turn.
    again = await refresh(client, fresh["refresh_token"])
    assert again.status_code == 200, again.text


async def test_bad_refresh_requests_are_refused_cleanly(client: Client) -> None:
    await client.register()
    await token_login(client)
    for body, status, code in [
        ({"refresh_token": "nope"}, 401, "invalid_grant"),
        ({"refresh_token": "wwr_" + "A" * 43}, 401, "invalid_grant"),
        ({"refresh_token": "x" * 300}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"refresh_token": "wwr_x", "extra": 1}, 422, "validation_error"),
    ]:
        response = await client.post("/v1/auth/refresh", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"] == code


async def test_concurrent_refreshes_have_one_winner_and_repeats_get_the_same_pair(
    client: Client,
) -> None:
    await client.register()
    pair = await token_login(client)
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(12)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    refresh_tokens = {r.json()["refresh_token"] for r in responses}
    access_tokens = {r.json()["access_token"] for r in responses}
    assert len(refresh_tokens) == 1 and len(access_tokens) == 1
    stored = await client.container.token_stores.refresh.get_by_hash(
        sha256_hex(refresh_tokens.pop())
    )
    assert stored is not None and stored.state == "active"
    assert (await me(client, access_tokens.pop())).status_code == 200


async def test_reuse_after_the_grace_window_revokes_the_session(
    client: Client, clock: ManualClock
) -> None:
    await client.register()
    pair = await token_login(client)
    fresh = (await refresh(client, pair["refresh_token"])).json()
    clock.advance(11)  # past the 10 s grace window
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"
    assert "already used" in response.json()["message"]
    # The whole family is dead: the new access token and the new refresh token.
    response = await me(client, fresh["access_token"])
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]
    assert (await refresh(client, fresh["refresh_token"])).status_code == 401
    session = await client.container.db.sessions.get(pair["session_id"])
    assert session is not None and session.revoked_reason == "refresh_token_reuse"
    events = await client.container.db.audit.tail(limit=20)
    assert AuditType.REFRESH_REUSE in [e.type for e in events]


async def test_strict_mode_concurrent_refreshes_revoke_the_family(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(refresh_reuse_grace=0)
    await client.register()
    pair = await token_login(client)
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1 and statuses.count(401) == 7
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await me(client, winner["access_token"])).status_code == 401
    assert (await refresh(client, winner["refresh_token"])).status_code == 401


async def test_refresh_respects_session_expiry_and_revocation(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(session_idle_timeout=120)
    await client.register()
    pair = await token_login(client)
    clock.advance(100)
    pair = (await refresh(client, pair["refresh_token"])).json()  # activity: idle restarts
    await client.container.sessions.flush_touches()
    clock.advance(100)
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 200, response.text
    pair = response.json()
    await client.container.sessions.flush_touches()
    clock.advance(121)
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


async def test_disabled_user_cannot_refresh_nor_use_tokens(client: Client) -> None:
    user = await client.register()
    pair = await token_login(client)
    assert (await me(client, pair["access_token"])).status_code == 200
    await client.container.accounts.set_disabled(
        user["id"],
        True,
        CLI,
        actor_id="t",
    )
    response = await me(client, pair["access_token"])
    assert response.status_code == 401
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"
