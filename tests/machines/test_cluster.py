"""Machine credentials on two nodes sharing PostgreSQL and Redis: a revocation on one node is
refused on the other, and a signed request's nonce is spent cluster-wide."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.machines.conftest import make_api_key
from watchword.bus.redis import RedisBus
from watchword.sdk.signing import HttpSignatureAuth
from watchword.stores.redis.nonces import RedisNonceStore

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def node(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, prefix: str
) -> Client:
    client = await client_factory(
        database_url=postgres_url, redis_url=redis_url, redis_prefix=prefix
    )
    bus = client.container.bus
    assert isinstance(bus, RedisBus) and await bus.wait_subscribed(10)
    return client


def bare(client: Client) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


async def eventually(check: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_revocation_and_nonces_across_nodes(
    client_factory: ClientFactory, postgres_url: str, redis_url: str
) -> None:
    prefix = f"ww-machines-{uuid.uuid4().hex[:8]}"
    one = await node(client_factory, postgres_url, redis_url, prefix)
    two = await node(client_factory, postgres_url, redis_url, prefix)
    assert isinstance(two.container.nonces, RedisNonceStore)
    email = f"m-{uuid.uuid4().hex[:8]}@example.com"
    await one.register(email)
    await one.login(email)
    created = await make_api_key(one, "profile")
    key = created["key"]
    async with bare(one) as a, bare(two) as b:
        assert (await b.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        assert (await one.delete(f"/v1/api-keys/{created['api_key']['id']}")).status_code == 200

        async def refused_on_two() -> bool:
            return (await b.get("/v1/me", headers={"X-API-Key": key})).status_code == 401

        await eventually(refused_on_two)

        signing = await one.post("/v1/signing-keys", json={"name": "svc", "scopes": "profile"})
        body = signing.json()
        auth = HttpSignatureAuth(
            body["signing_key"]["key_id"], body["secret"], now=one.container.clock.now
        )
        request = auth.sign(httpx.Request("GET", str(one.base_url) + "/v1/me"))
        assert (await a.send(request)).status_code == 200
        replayed = await b.send(request)
        assert replayed.status_code == 401 and "Replayed" in replayed.json()["message"]
