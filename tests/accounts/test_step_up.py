"""Step-up: a stale sign-in must confirm the password before it changes how the account signs
in (password, email, API keys)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.domain.audit import AuditType


async def signed_in(client_factory: ClientFactory, **settings: Any) -> Client:
    client = await client_factory(**settings)
    await client.register()
    await client.login()
    return client


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    return {}


async def signed_in_as(client_factory: ClientFactory, **settings: Any) -> tuple[Client, str]:
    """A signed-in user with an address of its own (PostgreSQL serves the whole run)."""
    client = await client_factory(**settings)
    email = f"step-up-{id(client)}@example.com"
    await client.register(email)
    await client.login(email)
    return client, email


async def test_changes_need_a_recent_sign_in_and_reauth_refreshes_it(
    client_factory: ClientFactory, clock: Any, db_settings: dict[str, Any]
) -> None:
    client, _ = await signed_in_as(client_factory, reauth_max_age=300, **db_settings)
    clock.advance(301)
    attempts = [
        ("/v1/me/password", {"current_password": PASSWORD, "new_password": "another good one"}),
        ("/v1/me/email", {"email": f"new-{id(client)}@example.com", "password": PASSWORD}),
        ("/v1/api-keys", {"name": "ci", "scopes": "profile"}),
    ]
    for path, body in attempts:
        response = await client.post(path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "reauth_required"
    assert (await client.get("/v1/me")).status_code == 200  # the session itself lives on

    wrong = await client.post("/v1/auth/reauth", json={"password": "not the password"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    done = await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    assert done.status_code == 200, done.text
    assert done.json()["amr"] == ["pwd"]
    assert done.json()["auth_time"] == int(clock.now().timestamp())
    key = await client.post("/v1/api-keys", json={"name": "ci", "scopes": "profile"})
    assert key.status_code == 201, key.text

    clock.advance(301)
    stale = await client.post("/v1/api-keys", json={"name": "ci2", "scopes": "profile"})
    assert stale.status_code == 401
    me = (await client.get("/v1/me")).json()
    events = await client.container.db.audit.for_user(me["user"]["id"])
    assert AuditType.STEP_UP in [e.type for e in events]


async def test_reauth_needs_a_session_and_csrf(client_factory: ClientFactory) -> None:
    client = await signed_in(client_factory)
    anonymous = await client_factory()
    response = await anonymous.post("/v1/auth/reauth", json={"password": PASSWORD})
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    del client.headers["X-CSRF-Token"]
    forged = await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"


async def test_reauth_is_throttled_like_a_password(client_factory: ClientFactory) -> None:
    client = await signed_in(client_factory, login_rate_limit_account="3/minute")
    for _ in range(3):
        wrong = await client.post("/v1/auth/reauth", json={"password": "not the password"})
        assert wrong.status_code == 401
    limited = await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    assert limited.status_code == 429


async def test_how_the_session_signed_in_shows_in_me_sessions_and_tokens(
    client_factory: ClientFactory, clock: Any, db_settings: dict[str, Any]
) -> None:
    import jwt

    client, email = await signed_in_as(client_factory, **db_settings)
    signed_in_at = int(clock.now().timestamp())
    me = (await client.get("/v1/me")).json()["authentication"]
    assert (me["amr"], me["auth_time"], me["acr"]) == (["pwd"], signed_in_at, "aal1")
    (listed,) = (await client.get("/v1/sessions")).json()["sessions"]
    assert (listed["amr"], listed["auth_time"]) == (["pwd"], signed_in_at)

    clock.advance(120)
    await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    me = (await client.get("/v1/me")).json()["authentication"]
    assert me["auth_time"] == signed_in_at + 120

    tokens = await client.post(
        "/v1/auth/login",
        json={"email": email, "password": PASSWORD, "mode": "token"},
    )
    claims = jwt.decode(tokens.json()["access_token"], options={"verify_signature": False})
    assert (claims["amr"], claims["auth_time"], claims["acr"]) == (
        ["pwd"],
        int(clock.now().timestamp()),
        "aal1",
    )
    bearer = await client.get(
        "/v1/me", headers={"Authorization": "Bearer " + tokens.json()["access_token"]}
    )
    assert bearer.json()["authentication"]["amr"] == ["pwd"]
