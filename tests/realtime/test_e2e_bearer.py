"""End to end with bearer access tokens: every way to present one, refresh, revocation."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.realtime.conftest import Server
from tests.realtime.helpers import closed, connect, next_message, register

pytestmark = pytest.mark.e2e


@dataclass
class TokenDevice:
    access: str
    refresh: str
    session_id: str
    user_id: str


async def token_sign_in(server: Server, email: str) -> TokenDevice:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return TokenDevice(
        body["access_token"], body["refresh_token"], body["session_id"], body["user"]["id"]
    )


async def rotate(server: Server, device: TokenDevice) -> TokenDevice:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/v1/auth/refresh", json={"refresh_token": device.refresh})
        assert response.status_code == 200, response.text
        body = response.json()
    return TokenDevice(
        body["access_token"], body["refresh_token"], body["session_id"], device.user_id
    )


async def test_every_way_to_present_a_token(server: Server) -> None:
    device = await token_sign_in(server, await register(server))
    ways = [
        {"subprotocols": ["watchword.v1", f"bearer.{device.access}"]},
        {"query": f"?access_token={device.access}"},
        {"additional_headers": {"Authorization": f"Bearer {device.access}"}},
    ]
    for way in ways:
        query = str(way.pop("query", ""))
        ws = await connect(server, query, **way)  # type: ignore[arg-type]
        assert ws.subprotocol == "watchword.v1"  # never the token itself
        welcome = await next_message(ws)
        assert welcome["type"] == "welcome", way
        assert welcome["session_id"] == device.session_id
        await ws.close()
    ws = await connect(server)
    await ws.send(json.dumps({"type": "auth", "token": device.access}))
    assert (await next_message(ws))["user_id"] == device.user_id
    await ws.close()
    assert device.access not in server.log()


async def test_revoking_the_token_session_closes_with_4003(server: Server) -> None:
    device = await token_sign_in(server, await register(server))
    ws = await connect(server, subprotocols=["watchword.v1", f"bearer.{device.access}"])
    assert (await next_message(ws))["type"] == "welcome"
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer {device.access}"}
        )
        assert response.status_code == 200, response.text
    assert await closed(ws) == (4003, "session_revoked: logout")
    # And the revoked token cannot open a new one.
    again = await connect(server, subprotocols=["watchword.v1", f"bearer.{device.access}"])
    assert (await closed(again))[0] in (4002, 4003)


async def test_refresh_with_a_rotated_token_of_the_same_session(short_server: Server) -> None:
    device = await token_sign_in(short_server, await register(short_server))
    ws = await connect(short_server, subprotocols=["watchword.v1", f"bearer.{device.access}"])
    welcome = await next_message(ws)
    assert (await next_message(ws))["type"] == "refresh_required"
    device = await rotate(short_server, device)
    await ws.send(json.dumps({"type": "refresh", "token": device.access}))
    refreshed = await next_message(ws)
    assert refreshed["type"] == "refreshed"
    assert refreshed["expires_at"] > welcome["expires_at"]
    await ws.close()


async def test_refresh_with_another_users_token_is_refused(short_server: Server) -> None:
    device = await token_sign_in(short_server, await register(short_server))
    other = await token_sign_in(short_server, await register(short_server))
    ws = await connect(short_server, subprotocols=["watchword.v1", f"bearer.{device.access}"])
    assert (await next_message(ws))["type"] == "welcome"
    await ws.send(json.dumps({"type": "refresh", "token": other.access}))
    assert await closed(ws) == (4006, "refresh_refused: another user or session")


async def test_a_forged_token_is_refused(server: Server) -> None:
    device = await token_sign_in(server, await register(server))
    header, payload, signature = device.access.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    ws = await connect(server, subprotocols=["watchword.v1", f"bearer.{forged}"])
    code, reason = await closed(ws)
    assert code == 4002
    assert reason is not None and reason.startswith("invalid_credential")
