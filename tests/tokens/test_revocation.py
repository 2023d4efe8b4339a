"""Revocation without per-request lookups: by session, by token id, across restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.tokens.helpers import bearer, me, refresh, token_login
from watchword.domain.errors import InvalidCredential, InvalidInput
from watchword.services.context import CLI


async def test_repeat_requests_are_served_from_memory_but_revocation_is_immediate(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    pair = await token_login(client)
    other = await token_login(client)
    tokens = client.container.tokens
    users = client.container.db.users
    reads: list[str] = []
    real_get = users.get

    async def counting_get(user_id: str) -> Any:
        reads.append(user_id)
        return await real_get(user_id)

    monkeypatch.setattr(users, "get", counting_get)
    for _ in range(20):
        assert (await me(client, pair["access_token"])).status_code == 200
    assert len(reads) <= 1  # the store is read once, not per request
    # Revoking one session by id (from the other one) refuses its token at once.
    response = await client.delete(
        f"/v1/sessions/{pair['session_id']}", headers=bearer(other["access_token"])
    )
    assert response.status_code in (200, 204), response.text
    response = await me(client, pair["access_token"])
    assert response.status_code == 401
    assert "session of this access token has been revoked" in response.json()["message"]
    assert tokens.is_revoked(pair["session_id"], None)
    assert (await me(client, other["access_token"])).status_code == 200


async def test_revoke_others_and_password_change_reach_tokens(client: Client) -> None:
    await client.register()
    first = await token_login(client)
    second = await token_login(client)
    response = await client.post(
        "/v1/me/password",
        json={
            "current_password": "correct horse battery staple",
            "new_password": "another long password 42",
        },
        headers=bearer(first["access_token"]),
    )
    assert response.status_code == 200, response.text
    assert (await me(client, second["access_token"])).status_code == 401
    # The session that changed it continues with a new pair; its old tokens are dead.
    assert (await me(client, first["access_token"])).status_code == 401
    assert (await me(client, response.json()["access_token"])).status_code == 200
    assert (await refresh(client, first["refresh_token"])).status_code == 401
    assert (await refresh(client, second["refresh_token"])).status_code == 401


async def test_revoke_jti(client: Client, clock: ManualClock) -> None:
    await client.register()
    pair = await token_login(client)
    tokens = client.container.tokens
    principal = await tokens.authenticate_bearer(pair["access_token"])
    assert principal.credential_id is not None and principal.expires_at is not None
    await tokens.revoke_jti(principal.credential_id, principal.expires_at)
    assert tokens.is_revoked(None, principal.credential_id)
    response = await me(client, pair["access_token"])
    assert response.status_code == 401
    assert response.json()["message"] == "The access token has been revoked."
    # Only that token: the session goes on with a refreshed one.
    fresh = (await refresh(client, pair["refresh_token"])).json()
    assert (await me(client, fresh["access_token"])).status_code == 200
    # Recorded durably, and in the control feed for the other nodes.
    stored = await client.container.token_stores.revocations.revoked_jtis(clock.now())
    assert principal.credential_id in stored
    records = await client.container.db.control.read_after(0)
    assert any(r.payload.get("jti") == principal.credential_id for r in records)
    # Forgotten once the token would have expired anyway.
    clock.advance(700)
    await tokens.upkeep()
    assert not tokens.is_revoked(None, principal.credential_id)
    assert await client.container.token_stores.revocations.revoked_jtis(clock.now()) == {}


async def test_revoke_jti_bad_input(client: Client, clock: ManualClock) -> None:
    tokens = client.container.tokens
    with pytest.raises(InvalidInput):
        await tokens.revoke_jti("", clock.now() + timedelta(seconds=60))
    with pytest.raises(InvalidInput):
        await tokens.revoke_jti("x" * 200, clock.now() + timedelta(seconds=60))
    await tokens.revoke_jti("already-dead", clock.now() - timedelta(seconds=1))
    assert not tokens.is_revoked(None, "already-dead")


async def test_a_restarted_node_remembers_recent_revocations(
    client: Client, app_factory: Any, clock: ManualClock
) -> None:
    await client.register()
    revoked = await token_login(client)
    kept = await token_login(client)
    await client.post("/v1/auth/logout", headers=bearer(revoked["access_token"]))
    principal = await client.container.tokens.authenticate_bearer(kept["access_token"])
    assert principal.credential_id is not None and principal.expires_at is not None
    await client.container.tokens.revoke_jti(principal.credential_id, principal.expires_at)
    # A node that starts now never saw those events on the bus.
    app, _ = await app_factory()
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        other = Client(transport=httpx.ASGITransport(app=app), base_url=str(client.base_url))
        assert (await me(other, revoked["access_token"])).status_code == 401
        assert (await me(other, kept["access_token"])).status_code == 401
        await other.aclose()
    finally:
        await lifespan.__aexit__(None, None, None)


async def test_revocation_set_retention_is_the_token_lifetime(client: Client) -> None:
    revoked = client.container.control.revoked
    revoked.add("sid-1", 1000.0, 10_000_000.0)
    assert revoked.snapshot()["sid-1"] == 1000.0 + 600 + 10


async def test_roles_change_and_disabling_refuse_tokens(client: Client) -> None:
    user = await client.register()
    pair = await token_login(client)
    assert (await me(client, pair["access_token"])).status_code == 200
    await client.container.accounts.set_roles(user["id"], ["admin"], CLI, actor_id="test")
    response = await me(client, pair["access_token"])
    assert response.status_code == 401
    assert "roles changed" in response.json()["message"]
    fresh = (await refresh(client, pair["refresh_token"])).json()
    body = (await me(client, fresh["access_token"])).json()
    assert "admin" in body["authentication"]["roles"]


async def test_deleted_user_tokens_are_refused(client: Client) -> None:
    tokens = client.container.tokens
    issued = await tokens.issue_access_token(
        subject="no-such-user", scopes=frozenset({"profile"}), roles=frozenset({"user"})
    )
    with pytest.raises(InvalidCredential, match="no longer exists"):
        await tokens.authenticate_bearer(issued.token)


async def test_issue_access_token_rules(client: Client) -> None:
    tokens = client.container.tokens
    with pytest.raises(InvalidInput):
        await tokens.issue_access_token(subject="u", scopes=frozenset(), session_id="s", ttl=601)
    with pytest.raises(InvalidInput):
        await tokens.issue_access_token(subject="c", scopes=frozenset(), client_id="c", ttl=3601)
    with pytest.raises(InvalidInput):
        await tokens.issue_access_token(subject="", scopes=frozenset())
    with pytest.raises(InvalidInput):
        await tokens.issue_access_token(
            subject="c", scopes=frozenset(), extra_claims={"sid": "forged"}
        )
    issued = await tokens.issue_access_token(
        subject="c", scopes=frozenset({"x"}), client_id="c", extra_claims={"tenant": "t1"}
    )
    assert issued.expires_in == 600
    principal = await tokens.authenticate_bearer(issued.token)
    assert principal.kind == "client" and principal.user_id is None


async def test_store_down_at_refresh_fails_closed(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory()
    await client.register()
    pair = await token_login(client)
    from watchword.domain.errors import StoreUnavailable

    refresh_store = client.container.token_stores.refresh

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable()

    original = refresh_store.get_by_hash
    refresh_store.get_by_hash = down  # type: ignore[method-assign]
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    refresh_store.get_by_hash = original  # type: ignore[method-assign]
    response = await refresh(client, pair["refresh_token"])
    assert response.status_code == 200


async def test_store_down_at_token_login_leaves_no_live_session(client: Client) -> None:
    await client.register()
    from watchword.domain.errors import StoreUnavailable

    refresh_store = client.container.token_stores.refresh

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable()

    refresh_store.create = down  # type: ignore[method-assign]
    response = await client.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": "correct horse battery staple",
            "mode": "token",
        },
    )
    assert response.status_code == 503
    user = await client.container.db.users.get_by_email("alice@example.com")
    assert user is not None
    assert await client.container.sessions.list_live(user.id) == []


async def test_a_node_started_with_its_store_down_refuses_bearers_with_503(
    settings_factory: Any, clock: ManualClock
) -> None:
    import httpx

    from tests.helpers import fast_hasher
    from watchword.services.container import Container
    from watchword.web.app import create_app

    settings = settings_factory(
        database_url="postgresql+asyncpg://watchword@127.0.0.1:9/unreachable", db_timeout=0.5
    )
    container = Container(settings, clock=clock, hasher=fast_hasher())
    app = create_app(settings, container=container)
    await container.start()  # what the lifespan does (other surfaces' start-up aside)
    try:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        assert not container.tokens.ready
        response = await http.get("/v1/me", headers=bearer("a.b.c"))
        assert response.status_code == 503
        assert (await http.get("/.well-known/jwks.json")).status_code == 503
        response = await http.post("/v1/auth/refresh", json={"refresh_token": "wwr_" + "a" * 43})
        assert response.status_code == 503
        await http.aclose()
    finally:
        await container.stop()


async def test_a_store_outage_fails_bearers_closed_once_the_user_cache_is_stale(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watchword.domain.errors import StoreUnavailable
    from watchword.services import bounded_cache as bounded_cache_module

    await client.register()
    pair = await token_login(client)
    assert (await me(client, pair["access_token"])).status_code == 200

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(client.container.db.users, "get", down)
    # Fresh cache: served from memory while the store is down.
    assert (await me(client, pair["access_token"])).status_code == 200
    later = bounded_cache_module.monotonic() + client.container.settings.session_cache_ttl + 1
    monkeypatch.setattr(bounded_cache_module, "monotonic", lambda: later)
    response = await me(client, pair["access_token"])
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
