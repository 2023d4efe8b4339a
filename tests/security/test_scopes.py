"""Scopes decide on every route: a credential never does more than it carries, and every
refusal for lack of scope has one shape, whatever the credential."""

from __future__ import annotations

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, ManualClock
from tests.security.conftest import (
    admin_client,
    api_key,
    bare,
    bearer,
    client_token,
    hmac_signer,
    oauth_client,
    token_login,
)
from watchword.services.context import CLI

CHALLENGE = 'Bearer realm="watchword", error="insufficient_scope", scope="admin"'


async def test_admins_profile_key_cannot_use_admin_routes(client_factory: ClientFactory) -> None:
    admin = await admin_client(client_factory)
    bob = await admin.register("bob@example.com")
    key = await api_key(admin, ["profile"])
    async with bare(admin) as anon:
        for method, path, body in (
            ("GET", "/v1/admin/users", None),
            ("PATCH", f"/v1/admin/users/{bob['id']}", {"disabled": True}),
            ("DELETE", f"/v1/admin/users/{bob['id']}/sessions", None),
        ):
            response = await anon.request(method, path, json=body, headers={"X-API-Key": key})
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"] == "insufficient_scope"
            assert response.headers["www-authenticate"] == CHALLENGE
    assert (await admin.get("/v1/admin/users")).status_code == 200  # the cookie is admin
    assert (await admin.container.accounts.get_user(bob["id"])).disabled is False


async def test_admin_key_with_admin_scope_works_until_the_role_goes(
    client_factory: ClientFactory,
) -> None:
    admin = await admin_client(client_factory)
    key = await api_key(admin, ["admin"])
    async with bare(admin) as anon:
        assert (await anon.get("/v1/admin/users", headers={"X-API-Key": key})).status_code == 200
        root = (await admin.get("/v1/me")).json()["user"]
        await admin.container.accounts.set_roles(root["id"], [], CLI, actor_id=None)
        response = await anon.get("/v1/admin/users", headers={"X-API-Key": key})
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"


async def test_every_credential_kind_gets_the_same_refusal(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    admin = await admin_client(client_factory)
    await admin.register("bob@example.com")
    signer = await hmac_signer(admin, clock, ["profile"])
    jwt_id, jwt_secret = await oauth_client(admin)
    opaque_id, opaque_secret = await oauth_client(admin, opaque=True)
    async with bare(admin) as anon:
        bob_tokens = await token_login(anon, "bob@example.com")
        jwt_token = (await client_token(anon, jwt_id, jwt_secret)).json()["access_token"]
        opaque = (await client_token(anon, opaque_id, opaque_secret)).json()["access_token"]
        challenged = {
            "user JWT": bearer(bob_tokens["access_token"]),
            "client JWT": bearer(jwt_token),
            "opaque token": bearer(opaque),
            "API key": {"X-API-Key": await api_key(admin, ["profile"])},
        }
        for kind, headers in challenged.items():
            response = await anon.get("/v1/admin/users", headers=headers)
            assert response.status_code == 403, kind
            assert response.json()["error"] == "insufficient_scope", kind
            assert response.headers["www-authenticate"] == CHALLENGE, kind
        signed = await anon.get("/v1/admin/users", auth=signer)
        assert signed.status_code == 403
        assert signed.json()["error"] == "insufficient_scope"
        async with bare(admin) as bob:
            await bob.post(
                "/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
            )
            cookie = await bob.get("/v1/admin/users")
            assert cookie.status_code == 403
            assert cookie.json()["error"] == "insufficient_scope"


async def test_security_events_need_the_profile_scope(alice: Client) -> None:
    key = await api_key(alice, ["sessions"])
    async with bare(alice) as anon:
        response = await anon.get("/v1/me/events", headers={"X-API-Key": key})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert (await alice.get("/v1/me/events")).status_code == 200
