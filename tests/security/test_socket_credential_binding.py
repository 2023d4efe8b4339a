"""Every live socket rests on the credential that opened it: when that credential ends, the
socket closes with 4003, as a session's sockets do; a role change re-checks it at once."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.realtime.conftest import Server
from tests.realtime.helpers import (
    admin,
    closed,
    connect,
    new_email,
    next_message,
    publish,
    register,
    sign_in,
)
from watchword.sdk.realtime import RealtimeClient, RealtimeClosed

pytestmark = pytest.mark.asyncio


async def api_key_of(server: Server, email: str, scopes: list[str]) -> tuple[str, str]:
    """(key id, key) made by the user signed in with a cookie."""
    device = await sign_in(server, email)
    try:
        made = await device.http.post("/v1/api-keys", json={"name": "socket", "scopes": scopes})
        assert made.status_code == 201, made.text
        return str(made.json()["api_key"]["id"]), str(made.json()["key"])
    finally:
        await device.close()


async def revoke_key(server: Server, email: str, key_id: str) -> None:
    device = await sign_in(server, email)
    try:
        response = await device.http.delete(f"/v1/api-keys/{key_id}")
        assert response.status_code == 200, response.text
    finally:
        await device.close()


async def welcomed(ws: Any) -> dict[str, Any]:
    message = await next_message(ws)
    assert message["type"] == "welcome", message
    return message


async def test_revoking_an_api_key_closes_the_socket_it_opened_by_header(server: Server) -> None:
    email = await register(server)
    key_id, key = await api_key_of(server, email, ["realtime"])
    ws = await connect(server, additional_headers={"X-API-Key": key})
    await welcomed(ws)
    await revoke_key(server, email, key_id)
    code, reason = await closed(ws)
    assert code == 4003
    assert reason == "session_revoked: api_key_revoked"


async def test_an_api_key_opens_a_socket_through_the_sdk_client_and_its_revocation_ends_it(
    server: Server,
) -> None:
    email = await register(server)
    key_id, key = await api_key_of(server, email, ["realtime"])
    async with RealtimeClient(server.ws, lambda: key, max_attempts=1) as client:
        assert client.welcome["user_id"]
        await revoke_key(server, email, key_id)
        with pytest.raises(RealtimeClosed) as ended:
            for _ in range(10):  # the revoking sign-in's own event may come first
                await client.next_event(10.0)
        assert ended.value.code == 4003


async def test_a_ticket_made_with_an_api_key_rests_on_the_key(server: Server) -> None:
    email = await register(server)
    _, key = await api_key_of(server, email, ["realtime"])
    async with httpx.AsyncClient(base_url=server.http) as http:
        made = await http.post("/v1/realtime/ticket", headers={"X-API-Key": key})
        assert made.status_code == 201, made.text
        ws = await connect(server, "?ticket=" + made.json()["ticket"])
        await welcomed(ws)
        revoked = await http.post("/oauth2/revoke", data={"token": key})  # RFC 7009
        assert revoked.status_code == 200, revoked.text
    code, reason = await closed(ws)
    assert (code, reason) == (4003, "session_revoked: api_key_revoked")


async def test_revoking_an_access_token_closes_the_socket_it_opened(server: Server) -> None:
    email = await register(server)
    async with httpx.AsyncClient(base_url=server.http) as http:
        login = await http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        ws = await connect(server, subprotocols=["watchword.v1", "bearer." + token])
        await welcomed(ws)
        revoked = await http.post("/oauth2/revoke", data={"token": token})
        assert revoked.status_code == 200, revoked.text
    code, reason = await closed(ws)
    assert (code, reason) == (4003, "session_revoked: token_revoked")


async def test_disabling_the_owner_closes_a_socket_opened_with_an_api_key(server: Server) -> None:
    email = await register(server)
    _, key = await api_key_of(server, email, ["realtime"])
    ws = await connect(server, subprotocols=["watchword.v1", "bearer." + key])
    welcome = await welcomed(ws)
    boss = await admin(server)
    try:
        response = await boss.http.patch(
            f"/v1/admin/users/{welcome['user_id']}", json={"disabled": True}
        )
        assert response.status_code == 200, response.text
    finally:
        await boss.close()
    code, reason = await closed(ws)
    assert (code, reason) == (4003, "session_revoked: user_disabled")


async def test_a_key_without_the_realtime_scope_is_refused_with_4010(server: Server) -> None:
    email = await register(server)
    _, key = await api_key_of(server, email, ["profile"])
    ws = await connect(server, subprotocols=["watchword.v1", "bearer." + key])
    assert (await closed(ws))[0] == 4010


@pytest.mark.parametrize("token_format", [["--opaque"], []], ids=["opaque", "jwt"])
async def test_a_clients_token_never_opens_a_socket(
    server: Server, token_format: list[str]
) -> None:
    made = server.cli(
        "clients", "create", "--name", "socket", "--scopes", "realtime", *token_format, "--json"
    )
    assert made.returncode == 0, made.stderr
    client = json.loads(made.stdout)
    async with httpx.AsyncClient(base_url=server.http) as http:
        issued = await http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
    ws = await connect(server, subprotocols=["watchword.v1", "bearer." + token])
    code, reason = await closed(ws)
    assert code == 4010 and reason is not None and "only users connect" in reason


async def test_a_role_change_rechecks_the_channels_of_an_open_socket(server: Server) -> None:
    email = new_email()
    await register(server, email)
    device = await sign_in(server, email)
    boss = await admin(server)
    try:
        granted = await boss.http.patch(
            f"/v1/admin/users/{device.user_id}", json={"roles": ["newsroom"]}
        )
        assert granted.status_code == 200, granted.text
        ws = await connect(server, "?ticket=" + await device.ticket())
        await welcomed(ws)
        await ws.send(json.dumps({"type": "subscribe", "channel": "sports", "ref": "s"}))
        assert (await next_message(ws))["type"] == "subscribed"
        taken = await boss.http.patch(f"/v1/admin/users/{device.user_id}", json={"roles": []})
        assert taken.status_code == 200, taken.text
        left = await next_message(ws)
        assert left == {"type": "unsubscribed", "channel": "sports", "reason": "forbidden"}
        sent = await publish(boss, channel="sports", event="score", data={"n": 1})
        assert sent.status_code == 202, sent.text
        await publish(boss, user_id=device.user_id, event="marker", data={})
        after = await next_message(ws)
        assert after.get("event") == "marker", after  # the sports event never came
    finally:
        await boss.close()
        await device.close()
