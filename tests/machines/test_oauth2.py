"""OAuth2 over HTTP: client credentials (RFC 6749 4.4), introspection (RFC 7662) with its
privacy rule, and revocation (RFC 7009) of every token kind."""

from __future__ import annotations

import base64
import hmac
from typing import Any
from unittest import mock

import httpx

from tests.conftest import Client, ClientFactory
from tests.machines.conftest import make_api_key
from watchword.domain.audit import AuditType
from watchword.services.context import CLI

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def bare(client: Client) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def register(
    client: Client, scopes: str = "reports:read reports:write", *, opaque: bool = False
) -> tuple[str, str]:
    created = await client.container.clients.create(
        name="reports", scopes=scopes, token_format="opaque" if opaque else "jwt", ctx=CLI
    )
    return created.client.id, created.secret


async def token(
    anon: httpx.AsyncClient, client_id: str, secret: str, **form: str
) -> httpx.Response:
    return await anon.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic(client_id, secret),
    )


async def test_client_credentials_jwt(client: Client) -> None:
    client_id, secret = await register(client)
    async with bare(client) as anon:
        response = await token(anon, client_id, secret)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "reports:read reports:write"
        assert body["access_token"].count(".") == 2
        me = await anon.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200, me.text
        auth = me.json()["authentication"]
        assert auth["kind"] == "client" and auth["client_id"] == client_id
        assert auth["session_id"] is None and me.json()["user"] is None
        # Scope narrowing, and client_secret_post.
        narrowed = await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "scope": "reports:read",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert narrowed.status_code == 200 and narrowed.json()["scope"] == "reports:read"


async def test_client_credentials_opaque(client: Client, clock: Any) -> None:
    client_id, secret = await register(client, opaque=True)
    async with bare(client) as anon:
        body = (await token(anon, client_id, secret, scope="reports:read")).json()
        assert body["access_token"].startswith("ww_at_")
        row = await client.container.machines.opaque_tokens.get_by_hash(
            __import__("hashlib").sha256(body["access_token"].encode()).hexdigest()
        )
        assert row is not None and body["access_token"] not in repr(row)
        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        me = await anon.get("/v1/me", headers=bearer)
        assert me.status_code == 200, me.text
        assert me.json()["authentication"]["method"] == "bearer_opaque"
        assert me.json()["authentication"]["scopes"] == ["reports:read"]
        # Missing scope on a route: 403 insufficient_scope.
        assert (await anon.get("/v1/sessions", headers=bearer)).status_code == 403
        clock.advance(client.container.settings.client_token_ttl + 1)
        expired = await anon.get("/v1/me", headers=bearer)
        assert expired.status_code == 401
        assert expired.json()["message"] == "The access token has expired."
        unknown = await anon.get("/v1/me", headers={"Authorization": "Bearer ww_at_" + "A" * 43})
        assert unknown.status_code == 401


async def test_token_endpoint_errors(client: Client) -> None:
    client_id, secret = await register(client)
    off = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    async with bare(client) as anon:
        wrong = await token(anon, client_id, off)
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client" and "error_description" in wrong.json()
        assert wrong.headers["www-authenticate"].startswith("Basic")
        unknown = await token(anon, "wwc_" + "0" * 24, secret)
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
        none = await anon.post("/oauth2/token", data={"grant_type": "client_credentials"})
        assert none.status_code == 401 and none.json()["error"] == "invalid_client"
        scope = await token(anon, client_id, secret, scope="admin")
        assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
        grant = await anon.post(
            "/oauth2/token", data={"grant_type": "password"}, headers=basic(client_id, secret)
        )
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        missing = await anon.post("/oauth2/token", data={}, headers=basic(client_id, secret))
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
        as_json = await anon.post(
            "/oauth2/token",
            json={"grant_type": "client_credentials"},
            headers=basic(client_id, secret),
        )
        assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
        twice = await anon.post(
            "/oauth2/token",
            content="grant_type=client_credentials&grant_type=client_credentials",
            headers={**FORM, **basic(client_id, secret)},
        )
        assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"
        both = await anon.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "client_secret": secret},
            headers=basic(client_id, secret),
        )
        assert both.status_code == 401
        malformed = await anon.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic !!!notbase64"},
        )
        assert malformed.status_code == 401
    await client.container.clients.set_disabled(client_id, True, CLI)
    async with bare(client) as anon:
        assert (await token(anon, client_id, secret)).status_code == 401
    rejected = [
        e
        for e in await client.container.db.audit.tail(limit=100)
        if e.type == AuditType.CREDENTIAL_REJECTED
    ]
    assert {e.details["reason"] for e in rejected} >= {"wrong_secret", "unknown", "disabled"}
    assert all(secret not in str(e.details) for e in rejected)


async def test_client_secret_compared_in_constant_time(client: Client) -> None:
    client_id, secret = await register(client)
    with mock.patch(
        "watchword.domain.clients.hmac.compare_digest", wraps=hmac.compare_digest
    ) as spy:
        async with bare(client) as anon:
            assert (await token(anon, client_id, secret)).status_code == 200
            assert (await token(anon, "wwc_" + "0" * 24, secret)).status_code == 401
    assert spy.call_count == 2  # the unknown client is compared too (same work, same timing)


async def test_client_secret_brute_force_is_rate_limited(client_factory: ClientFactory) -> None:
    client = await client_factory(credential_fail_limit_credential="3/minute")
    client_id, secret = await register(client)
    async with bare(client) as anon:
        statuses = [(await token(anon, client_id, "x" * 43)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        # Past the budget even the right secret waits: the guess that hits is not accepted.
        assert (await token(anon, client_id, secret)).status_code == 429


async def introspect(anon: httpx.AsyncClient, creds: tuple[str, str], value: str) -> dict[str, Any]:
    response = await anon.post("/oauth2/introspect", data={"token": value}, headers=basic(*creds))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    result: dict[str, Any] = response.json()
    return result


async def test_introspection_and_privacy_rule(user_client: Client) -> None:
    c = user_client.container
    owner = await register(user_client, opaque=True)
    other = await register(user_client)
    resource_server = await register(user_client, "introspect")
    api_key = (await make_api_key(user_client, "profile"))["key"]
    async with bare(user_client) as anon:
        opaque = (await token(anon, *owner)).json()["access_token"]
        jwt = (await token(anon, *other)).json()["access_token"]
        login = await anon.post(
            "/v1/auth/login",
            json={
                "email": "alice@example.com",
                "password": "correct horse battery staple",
                "mode": "token",
            },
        )
        refresh = login.json().get("refresh_token") if login.status_code == 200 else None
        user_jwt = login.json().get("access_token") if login.status_code == 200 else None

        # Unauthenticated callers learn nothing at all.
        anon_call = await anon.post("/oauth2/introspect", data={"token": opaque})
        assert anon_call.status_code == 401 and anon_call.json()["error"] == "invalid_client"
        assert "active" not in anon_call.json()

        # A client sees its own tokens...
        mine = await introspect(anon, owner, opaque)
        assert mine["active"] is True and mine["client_id"] == owner[0]
        assert mine["token_type"] == "Bearer"
        assert mine["scope"] == "reports:read reports:write" and mine["exp"] > mine["iat"]
        own_jwt = await introspect(anon, other, jwt)
        assert own_jwt["active"] is True and own_jwt["sub"] == other[0] and "sid" not in own_jwt
        # ...and nothing of anyone else's: the same answer as an unknown token.
        assert await introspect(anon, other, opaque) == {"active": False}
        assert await introspect(anon, owner, jwt) == {"active": False}
        assert await introspect(anon, owner, api_key) == {"active": False}
        assert await introspect(anon, owner, "ww_at_" + "A" * 43) == {"active": False}
        assert await introspect(anon, owner, "garbage") == {"active": False}

        # A resource server (scope "introspect") sees every kind.
        seen = await introspect(anon, resource_server, api_key)
        assert seen["active"] is True and seen["token_type"] == "Bearer"
        assert seen["username"] == "alice@example.com" and seen["scope"] == "profile"
        assert (await introspect(anon, resource_server, opaque))["active"] is True
        assert (await introspect(anon, resource_server, jwt))["client_id"] == other[0]
        if refresh is not None:
            r = await introspect(anon, resource_server, refresh)
            assert r["active"] is True and "token_type" not in r and r["sid"]
            assert await introspect(anon, owner, refresh) == {"active": False}
        if user_jwt is not None:
            u = await introspect(anon, resource_server, user_jwt)
            assert u["active"] is True and u["username"] == "alice@example.com" and u["sid"]
    assert c is not None


async def test_revocation_of_every_kind(user_client: Client) -> None:
    owner = await register(user_client, opaque=True)
    jwt_client = await register(user_client)
    resource_server = await register(user_client, "introspect")
    created = await make_api_key(user_client, "profile")
    async with bare(user_client) as anon:
        opaque = (await token(anon, *owner)).json()["access_token"]
        jwt = (await token(anon, *jwt_client)).json()["access_token"]
        login = await anon.post(
            "/v1/auth/login",
            json={
                "email": "alice@example.com",
                "password": "correct horse battery staple",
                "mode": "token",
            },
        )
        assert login.status_code == 200, login.text
        refresh, user_jwt = login.json()["refresh_token"], login.json()["access_token"]

        async def revoke(value: str, creds: tuple[str, str] | None = None) -> None:
            headers = basic(*creds) if creds else {}
            response = await anon.post("/oauth2/revoke", data={"token": value}, headers=headers)
            assert response.status_code == 200, response.text

        def bearer(value: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {value}"}

        assert (await anon.get("/v1/me", headers=bearer(opaque))).status_code == 200
        await revoke(opaque, owner)
        assert (await anon.get("/v1/me", headers=bearer(opaque))).status_code == 401
        assert await introspect(anon, resource_server, opaque) == {"active": False}

        assert (await anon.get("/v1/me", headers=bearer(jwt))).status_code == 200
        await revoke(jwt, jwt_client)
        assert (await anon.get("/v1/me", headers=bearer(jwt))).status_code == 401

        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 200
        await revoke(created["key"])  # possession is enough
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 401

        # A refresh token takes its whole session: the access token of it stops too.
        assert (await anon.get("/v1/me", headers=bearer(user_jwt))).status_code == 200
        await revoke(refresh)
        assert (await anon.get("/v1/me", headers=bearer(user_jwt))).status_code == 401
        assert await introspect(anon, resource_server, refresh) == {"active": False}

        # Unknown and already revoked tokens: 200, nothing else.
        await revoke("ww_at_" + "B" * 43, owner)
        await revoke(opaque, owner)
        await revoke("nonsense")
        # Bad client credentials are refused, missing token is invalid_request.
        bad = await anon.post(
            "/oauth2/revoke", data={"token": opaque}, headers=basic(owner[0], "x" * 43)
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        missing = await anon.post("/oauth2/revoke", data={}, headers=basic(*owner))
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_expired_opaque_tokens_are_swept(client: Client, clock: Any) -> None:
    client_id, secret = await register(client, opaque=True)
    async with bare(client) as anon:
        issued = (await token(anon, client_id, secret)).json()["access_token"]
    assert await client.container.clients.sweep() == 0  # live tokens stay
    clock.advance(client.container.settings.client_token_ttl + 86_400 + 1)
    assert await client.container.clients.sweep() == 1
    assert await client.container.clients.find_opaque(issued) is None


async def test_endpoints_are_in_the_openapi_document(client: Client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/v1/api-keys",
        "/v1/api-keys/{key_id}",
        "/v1/signing-keys",
        "/v1/signing-keys/{key_id}",
    ):
        assert path in paths, path


async def test_opaque_token_uses_are_audited_coalesced(client: Client) -> None:
    client_id, secret = await register(client, opaque=True)
    async with bare(client) as anon:
        issued = (await token(anon, client_id, secret)).json()["access_token"]
        for _ in range(3):
            me = await anon.get("/v1/me", headers={"Authorization": f"Bearer {issued}"})
            assert me.status_code == 200
    await client.container.clients.flush_usage()
    used = [
        e
        for e in await client.container.db.audit.tail(limit=50)
        if e.type == AuditType.CREDENTIAL_USED and e.details.get("kind") == "opaque_token"
    ]
    assert len(used) == 1 and used[0].details["uses"] == 3
    assert used[0].details["client_id"] == client_id and issued not in str(used[0].details)


async def test_disabling_a_client_stops_its_jwts_at_once(client: Client) -> None:
    client_id, secret = await register(client)
    async with bare(client) as anon:
        issued = (await token(anon, client_id, secret)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {issued}"}
        assert (await anon.get("/v1/me", headers=bearer)).status_code == 200
        await client.container.clients.set_disabled(client_id, True, CLI)
        refused = await anon.get("/v1/me", headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["message"] == "The client of this access token is disabled."
        await client.container.clients.set_disabled(client_id, False, CLI)
        assert (await anon.get("/v1/me", headers=bearer)).status_code == 200


async def test_disabled_clients_are_known_after_a_restart(client_factory: ClientFactory) -> None:
    first = await client_factory()
    client_id, secret = await register(first)
    async with bare(first) as anon:
        issued = (await token(anon, client_id, secret)).json()["access_token"]
    await first.container.clients.set_disabled(client_id, True, CLI)
    # A second node on the same database, started after the change.
    second = await client_factory()
    async with bare(second) as anon:
        response = await anon.get("/v1/me", headers={"Authorization": f"Bearer {issued}"})
    assert response.status_code == 401
    assert response.json()["message"] == "The client of this access token is disabled."
