"""API keys end to end over HTTP: creation shown once, both headers, every refusal path."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from unittest import mock

import httpx

from tests.conftest import Client, ClientFactory
from tests.helpers import LateReads
from tests.machines.conftest import make_api_key
from watchword.domain.audit import AuditType
from watchword.domain.clock import sha256_hex
from watchword.services.context import CLI


def bare(client: Client) -> httpx.AsyncClient:
    """A client on the same app with no cookie and no CSRF header."""
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


async def test_create_shows_key_once_and_authenticates_with_both_headers(
    user_client: Client,
) -> None:
    response = await user_client.post(
        "/v1/api-keys", json={"name": "deploy", "scopes": ["profile", "sessions"]}
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    key = body["key"]
    assert key.startswith("ww_live_") and body["api_key"]["prefix"] in key
    public_id, secret = key[len("ww_live_") :].split("_", 1)
    assert len(public_id) == 16 and len(secret) == 43  # 256-bit secret, base64url
    assert body["api_key"]["scopes"] == ["profile", "sessions"]

    listed = (await user_client.get("/v1/api-keys")).json()["api_keys"]
    assert [k["id"] for k in listed] == [body["api_key"]["id"]]
    assert "key" not in listed[0] and key not in str(listed)

    async with bare(user_client) as anon:
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            me = await anon.get("/v1/me", headers=headers)
            assert me.status_code == 200, me.text
            auth = me.json()["authentication"]
            assert auth["method"] == "api_key"
            assert auth["scopes"] == ["profile", "sessions"]
            assert me.json()["user"]["email"] == "alice@example.com"


async def test_stored_only_as_hash(user_client: Client) -> None:
    created = await make_api_key(user_client)
    row = await user_client.container.machines.api_keys.get(created["api_key"]["id"])
    assert row is not None
    assert created["key"] not in repr(row)
    assert row.secret_hash != created["key"] and len(row.secret_hash) == 64


async def test_scopes_must_be_subset_of_owner(user_client: Client) -> None:
    response = await user_client.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    # No scope, or one that is not an RFC 6749 scope-token: the schema refuses the body.
    response = await user_client.post("/v1/api-keys", json={"name": "x", "scopes": []})
    assert response.status_code == 422
    response = await user_client.post("/v1/api-keys", json={"name": "x", "scopes": 'bad"scope'})
    assert response.status_code == 422
    assert (
        await user_client.container.machines.api_keys.list_for_user(
            (await user_client.get("/v1/me")).json()["user"]["id"]
        )
        == []
    )


async def test_missing_scope_is_403_insufficient_scope(user_client: Client) -> None:
    key = (await make_api_key(user_client, "profile"))["key"]
    async with bare(user_client) as anon:
        response = await anon.get("/v1/sessions", headers={"X-API-Key": key})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_refusals(user_client: Client) -> None:
    key = (await make_api_key(user_client))["key"]
    one_off = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown = "ww_live_0123456789abcdef_" + key[-43:]
    async with bare(user_client) as anon:
        for bad in (one_off, unknown, "ww_live_short", "ww_live_" + "x" * 80):
            response = await anon.get("/v1/me", headers={"X-API-Key": bad})
            assert response.status_code == 401, bad
            assert response.json()["error"] == "invalid_api_key"
            assert "invalid_token" in response.headers["www-authenticate"]
    events = await user_client.container.db.audit.tail(limit=50)
    rejected = [e for e in events if e.type == AuditType.CREDENTIAL_REJECTED]
    assert {e.details["reason"] for e in rejected} >= {"wrong_secret", "unknown", "malformed"}
    assert all(key not in str(e.details) and one_off not in str(e.details) for e in events)


async def test_constant_time_comparison(user_client: Client) -> None:
    key = (await make_api_key(user_client))["key"]
    with mock.patch(
        "watchword.domain.apikeys.hmac.compare_digest", wraps=hmac.compare_digest
    ) as spy:
        async with bare(user_client) as anon:
            assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
            bad = key[:-1] + ("A" if key[-1] != "A" else "B")
            assert (await anon.get("/v1/me", headers={"X-API-Key": bad})).status_code == 401
    # Every presented secret, the right one and the wrong one, met the stored hash there
    # (a refused one may be compared again, by the path that records the refusal).
    compared = {call.args[1] for call in spy.call_args_list}
    assert compared == {sha256_hex(key), sha256_hex(bad)}


async def test_revoke_takes_effect_at_once(user_client: Client) -> None:
    created = await make_api_key(user_client)
    key = created["key"]
    async with bare(user_client) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        response = await user_client.delete(f"/v1/api-keys/{created['api_key']['id']}")
        assert response.status_code == 200
        response = await anon.get("/v1/me", headers={"X-API-Key": key})
        assert response.status_code == 401
        assert response.json()["message"] == "The API key has been revoked."
    again = await user_client.delete(f"/v1/api-keys/{created['api_key']['id']}")
    assert again.status_code == 404
    assert (await user_client.get("/v1/api-keys")).json()["api_keys"] == []


async def test_cannot_revoke_someone_elses_key(client_factory: ClientFactory) -> None:
    alice = await client_factory()
    await alice.register()
    await alice.login()
    created = await make_api_key(alice)
    await alice.register("bob@example.com")
    bob = Client(transport=alice._transport, base_url=str(alice.base_url))
    bob.container = alice.container
    await bob.login("bob@example.com")
    assert (await bob.delete(f"/v1/api-keys/{created['api_key']['id']}")).status_code == 404
    async with bare(alice) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 200
    await bob.aclose()


async def test_expired_key(user_client: Client, clock) -> None:  # type: ignore[no-untyped-def]
    key = (await make_api_key(user_client, expires_in=60))["key"]
    async with bare(user_client) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        clock.advance(61)
        response = await anon.get("/v1/me", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.json()["message"] == "The API key has expired."
    bad = await user_client.post(
        "/v1/api-keys", json={"name": "x", "scopes": "profile", "expires_in": 5}
    )
    assert bad.status_code == 400


async def test_role_change_and_disable_apply_on_next_request(user_client: Client) -> None:
    c = user_client.container
    user = await c.accounts.find_user("alice@example.com")
    await c.accounts.set_roles(user.id, ["admin"], CLI, actor_id="cli")
    key = (await make_api_key(user_client, ["profile", "admin"]))["key"]
    async with bare(user_client) as anon:
        me = await anon.get("/v1/me", headers={"X-API-Key": key})
        assert me.json()["authentication"]["scopes"] == ["admin", "profile"]
        await c.accounts.set_roles(user.id, [], CLI, actor_id="cli")
        me = await anon.get("/v1/me", headers={"X-API-Key": key})
        assert me.json()["authentication"]["scopes"] == ["profile"]
        await c.accounts.set_disabled(user.id, True, CLI, actor_id="cli")
        response = await anon.get("/v1/me", headers={"X-API-Key": key})
        assert response.status_code == 401
        assert response.json()["message"] == "The account is disabled."


async def test_change_from_another_process_reaches_the_cache(user_client: Client) -> None:
    """The CLI writes the control feed; the server applies it on its next poll."""
    c = user_client.container
    created = await make_api_key(user_client)
    async with bare(user_client) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 200
        # What `watchword api-keys revoke` does in its own process: a store write plus the
        # control record, no bus message to this node.
        await c.machines.api_keys.revoke(created["api_key"]["id"], c.clock.now(), origin="cli")
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 200
        await c.control.poll_once()
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 401


async def test_last_used_is_coalesced(user_client: Client) -> None:
    c = user_client.container
    created = await make_api_key(user_client)
    async with bare(user_client) as anon:
        for _ in range(5):
            assert (
                await anon.get("/v1/me", headers={"X-API-Key": created["key"]})
            ).status_code == 200
    row = await c.machines.api_keys.get(created["api_key"]["id"])
    assert row is not None and row.last_used_at is None  # nothing written per request
    listed = (await user_client.get("/v1/api-keys")).json()["api_keys"]
    assert listed[0]["last_used_at"] is not None  # this node knows
    await c.api_keys.flush_usage()
    row = await c.machines.api_keys.get(created["api_key"]["id"])
    assert row is not None and row.last_used_at == c.clock.now()
    used = [e for e in await c.db.audit.tail(limit=50) if e.type == AuditType.CREDENTIAL_USED]
    assert used[-1].details["uses"] == 5 and used[-1].details["kind"] == "api_key"


async def test_brute_force_is_rate_limited(client_factory: ClientFactory) -> None:
    client = await client_factory(credential_fail_limit_ip="5/minute")
    await client.register()
    await client.login()
    key = (await make_api_key(client))["key"]
    async with bare(client) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        statuses = []
        for i in range(7):
            guess = f"ww_live_{i:016x}_" + "A" * 43
            statuses.append((await anon.get("/v1/me", headers={"X-API-Key": guess})).status_code)
        assert statuses[:4] == [401] * 4 and statuses[-2:] == [429, 429]
        refused = await anon.get("/v1/me", headers={"X-API-Key": "ww_live_" + "f" * 16 + "_x"})
        assert refused.status_code == 429 and "retry-after" in refused.headers
        # A key this node has already verified is not looked up again: its holder goes on.
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
    audit = await client.container.db.audit.tail(limit=100)
    assert any(e.type == AuditType.CREDENTIAL_RATE_LIMITED for e in audit)


async def test_guessing_one_key_id_is_rate_limited(client_factory: ClientFactory) -> None:
    client = await client_factory(credential_fail_limit_credential="3/minute")
    await client.register()
    await client.login()
    key = (await make_api_key(client))["key"]
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    async with bare(client) as anon:
        statuses = [
            (await anon.get("/v1/me", headers={"X-API-Key": wrong})).status_code for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200


async def test_malformed_headers(user_client: Client) -> None:
    async with bare(user_client) as anon:
        for headers, code in (
            ({"Authorization": "Bearer ww_live_nothex_" + "A" * 43}, "invalid_api_key"),
            ({"Authorization": "Bearer ww_live_"}, "invalid_api_key"),
            ({"X-API-Key": ""}, "invalid_api_key"),
            ({"X-API-Key": "not-a-key"}, "invalid_api_key"),
            ({"Authorization": "Bearer ww_at_short"}, "invalid_token"),
        ):
            response = await anon.get("/v1/me", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"] == code, (headers, response.json())
        # Not ours (another scheme): anonymous, so the route asks for authentication.
        other = await anon.get("/v1/me", headers={"Authorization": "Token ww_live_x"})
        assert other.status_code == 401 and other.json()["error"] == "unauthenticated"


async def test_requests_that_miss_the_cache_together_share_one_store_read(
    user_client: Client,
) -> None:
    key = (await make_api_key(user_client))["key"]
    container = user_client.container
    store = container.machines.api_keys
    reads = LateReads(store.get_by_public_id)
    container.api_keys.cache.clear()
    with mock.patch.object(store, "get_by_public_id", reads):
        async with bare(user_client) as anon:
            answers = await asyncio.gather(
                *(anon.get("/v1/me", headers={"X-API-Key": key}) for _ in range(20))
            )
    assert [a.status_code for a in answers] == [200] * 20
    assert reads.calls == 1
    assert len(container.api_keys.loads) == 0  # nothing left in flight


async def test_a_revocation_during_a_store_read_is_not_undone_by_that_read(
    user_client: Client,
) -> None:
    created = await make_api_key(user_client)
    key = created["key"]
    container = user_client.container
    store = container.machines.api_keys
    read = store.get_by_public_id
    row_read, release = asyncio.Event(), asyncio.Event()

    async def slow(public_id: str) -> Any:
        row = await read(public_id)  # the row as it was before the revocation
        row_read.set()
        await release.wait()
        return row

    container.api_keys.cache.clear()
    async with bare(user_client) as anon:
        with mock.patch.object(store, "get_by_public_id", slow):
            first = asyncio.ensure_future(anon.get("/v1/me", headers={"X-API-Key": key}))
            await row_read.wait()
            revoked = await user_client.delete(f"/v1/api-keys/{created['api_key']['id']}")
            assert revoked.status_code == 200
            release.set()
            assert (await first).status_code == 200  # it began before the revocation
        after = await anon.get("/v1/me", headers={"X-API-Key": key})
    # The stale row was not cached: the next request reads the store and is refused.
    assert after.status_code == 401
    assert after.json()["message"] == "The API key has been revoked."
