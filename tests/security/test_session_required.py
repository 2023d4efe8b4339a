"""Operations that change how an account signs in need a person's live session."""

from __future__ import annotations

from tests.conftest import Client
from tests.helpers import PASSWORD, ManualClock
from tests.security.conftest import (
    api_key,
    bare,
    bearer,
    client_token,
    hmac_signer,
    oauth_client,
    token_login,
)

NEW = "another correct horse battery"


def change(current: str = PASSWORD, new: str = NEW) -> dict[str, str]:
    return {"current_password": current, "new_password": new}


async def test_delegated_credentials_cannot_change_the_password(
    alice: Client, clock: ManualClock
) -> None:
    key = await api_key(alice, ["profile", "sessions", "api-keys", "signing-keys"])
    signer = await hmac_signer(alice, clock, ["profile"])
    client_id, secret = await oauth_client(alice, "profile")
    async with bare(alice) as anon:
        client_jwt = (await client_token(anon, client_id, secret)).json()["access_token"]
        for kind, kwargs in (
            ("API key", {"headers": {"X-API-Key": key}}),
            ("API key as bearer", {"headers": bearer(key)}),
            ("client token", {"headers": bearer(client_jwt)}),
            ("signed request", {"auth": signer}),
        ):
            response = await anon.post("/v1/me/password", json=change(), **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 403, (kind, response.text)
            assert response.json()["error"] == "session_required", kind
        # Nothing changed: the old password still signs in.
        await token_login(anon)


async def test_a_session_token_may_change_the_password(alice: Client) -> None:
    async with bare(alice) as anon:
        pair = await token_login(anon)
        response = await anon.post(
            "/v1/me/password", json=change(), headers=bearer(pair["access_token"])
        )
        assert response.status_code == 200, response.text


async def test_the_cookie_session_may_change_the_password(alice: Client) -> None:
    response = await alice.post("/v1/me/password", json=change())
    assert response.status_code == 200, response.text


async def test_a_password_change_rekeys_the_cookie_session(alice: Client) -> None:
    old_cookie = alice.cookies.get("watchword_session")
    assert old_cookie
    async with bare(alice) as phone:
        await phone.post(
            "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
        )
        response = await alice.post("/v1/me/password", json=change())
        assert response.status_code == 200, response.text
        new_cookie = alice.cookies.get("watchword_session")
        assert new_cookie and new_cookie != old_cookie
        assert response.json()["revoked_sessions"] == 1
        assert (await phone.get("/v1/me")).status_code == 401  # every other session ends
    async with bare(alice) as thief:
        stale = await thief.get("/v1/me", headers={"Cookie": f"watchword_session={old_cookie}"})
        assert stale.status_code == 401
        fresh = await thief.get("/v1/me", headers={"Cookie": f"watchword_session={new_cookie}"})
        assert fresh.status_code == 200


async def test_a_password_change_rekeys_the_token_session(alice: Client) -> None:
    async with bare(alice) as anon:
        pair = await token_login(anon)
        response = await anon.post(
            "/v1/me/password", json=change(), headers=bearer(pair["access_token"])
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["refresh_token"] != pair["refresh_token"]
        stale = await anon.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert stale.status_code == 401
        assert (await anon.get("/v1/me", headers=bearer(pair["access_token"]))).status_code == 401
        assert (await anon.get("/v1/me", headers=bearer(body["access_token"]))).status_code == 200
        renewed = await anon.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert renewed.status_code == 200
