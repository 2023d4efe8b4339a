"""RFC 7009 section 2.1: an authenticated client revokes only tokens issued to it."""

from __future__ import annotations

import httpx

from tests.conftest import Client
from tests.security.conftest import (
    api_key,
    bare,
    basic,
    bearer,
    client_token,
    oauth_client,
    token_login,
)


async def revoke(anon: httpx.AsyncClient, token: str, **kwargs: object) -> httpx.Response:
    return await anon.post("/oauth2/revoke", data={"token": token}, **kwargs)  # type: ignore[arg-type]


async def test_a_client_cannot_revoke_another_clients_tokens(alice: Client) -> None:
    owner = await oauth_client(alice, opaque=True)
    owner_jwt = await oauth_client(alice)
    attacker = await oauth_client(alice)
    async with bare(alice) as anon:
        opaque = (await client_token(anon, *owner)).json()["access_token"]
        jwt = (await client_token(anon, *owner_jwt)).json()["access_token"]
        for victim in (opaque, jwt):
            response = await revoke(anon, victim, headers=basic(*attacker))
            assert response.status_code == 400, response.text
            body = response.json()
            assert body["error"] == "unauthorized_client"
            assert "not issued" in body["error_description"]
            assert (await anon.get("/v1/me", headers=bearer(victim))).status_code == 200
        # Its own client may revoke them.
        assert (await revoke(anon, opaque, headers=basic(*owner))).status_code == 200
        assert (await revoke(anon, jwt, headers=basic(*owner_jwt))).status_code == 200
        for victim in (opaque, jwt):
            assert (await anon.get("/v1/me", headers=bearer(victim))).status_code == 401


async def test_a_client_cannot_revoke_a_users_credentials(alice: Client) -> None:
    attacker = await oauth_client(alice)
    key = await api_key(alice, ["profile"])
    async with bare(alice) as anon:
        pair = await token_login(anon)
        for victim in (key, pair["refresh_token"], pair["access_token"]):
            response = await revoke(anon, victim, headers=basic(*attacker))
            assert response.status_code == 400
            assert response.json()["error"] == "unauthorized_client"
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        assert (await anon.get("/v1/me", headers=bearer(pair["access_token"]))).status_code == 200
        refreshed = await anon.post(
            "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 200


async def test_a_holder_still_revokes_their_own_tokens(alice: Client) -> None:
    key = await api_key(alice, ["profile"])
    async with bare(alice) as anon:
        pair = await token_login(anon)
        assert (await revoke(anon, key)).status_code == 200
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 401
        assert (await revoke(anon, pair["refresh_token"])).status_code == 200
        assert (await anon.get("/v1/me", headers=bearer(pair["access_token"]))).status_code == 401
        # Unknown tokens: 200 and nothing else, even for an authenticated client.
        attacker = await oauth_client(alice)
        assert (await revoke(anon, "ww_at_unknown", headers=basic(*attacker))).status_code == 200
