"""Two nodes in one process (two apps, two containers) on the real PostgreSQL and Redis.

The process-level tests (three `watchword serve` processes) are in test_nodes.py; these check
the pieces one at a time, including the ones a subprocess test cannot reach (scripts, races).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from tests.cluster.conftest import PrivateRedis, eventually
from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.bus.redis import RedisBus
from watchword.domain.clock import sha256_hex
from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis import RedisNonceStore, RedisOptions, make_client
from watchword.stores.redis.sessions import RedisCachedDatabase

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def node(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, prefix: str, **overrides: Any
) -> Client:
    client = await client_factory(
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        redis_socket_timeout=0.5,
        redis_connect_timeout=0.5,
        bus_reconnect_max_delay=0.2,
        **overrides,
    )
    bus = client.container.bus
    assert isinstance(bus, RedisBus)
    assert await bus.wait_subscribed(10)
    return client


def same_browser(source: Client, target: Client) -> None:
    """``target`` (another node) presents the cookie and CSRF token ``source`` got."""
    for cookie in source.cookies.jar:
        target.cookies.set(cookie.name, cookie.value or "")
    target.headers["X-CSRF-Token"] = source.headers["X-CSRF-Token"]


async def test_a_cookie_from_one_node_works_on_another_and_revocation_reaches_it(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    two = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    await one.login(address)
    same_browser(one, two)
    me = await two.get("/v1/me")
    assert me.status_code == 200, me.text
    session_id = me.json()["session"]["id"]
    assert (await one.get("/v1/me")).status_code == 200
    # The Redis layer now holds the session; node two revokes it.
    assert isinstance(one.container.db, RedisCachedDatabase)
    revoked = await two.post("/v1/auth/logout")
    assert revoked.status_code == 200

    async def refused_on_one() -> bool:
        response = await one.get("/v1/me")
        return response.status_code == 401 and response.json()["error"] == "session_revoked"

    await eventually(refused_on_one)
    # The bus carried it (not the one-second feed poll): node one holds it as revoked.
    assert session_id in one.container.control.revoked
    cache = one.container.cluster.session_cache
    assert cache is not None and await cache.is_revoked(session_id)


async def test_a_loader_racing_a_revocation_cannot_recache_the_session(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    await one.login(address)
    secret = one.cookies["watchword_session"]
    session = await one.container.db.sessions.get_by_secret_hash(sha256_hex(secret))
    assert session is not None
    cache = one.container.cluster.session_cache
    assert cache is not None
    # A node read the live row just before another revoked it...
    await cache.revoke(session.id, session.expires_at.timestamp(), 0.0)
    # ...and only now tries to cache what it read: the script refuses.
    assert await cache.put(session, 0) is False
    assert await cache.get(sha256_hex(secret)) is None


async def test_an_entry_older_than_the_nodes_start_is_not_trusted(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    await one.login(address)
    secret_hash = sha256_hex(one.cookies["watchword_session"])
    store = one.container.db.sessions
    cache = one.container.cluster.session_cache
    assert cache is not None
    session = await store.get_by_secret_hash(secret_hash)
    assert session is not None
    # Pretend this node started after the entry was loaded: it must go back to SQL,
    # and re-cache the session at its own position.
    store.trusted_from = lambda: 10**9  # type: ignore[attr-defined]
    store.cursor = lambda: 10**9  # type: ignore[attr-defined]
    again = await store.get_by_secret_hash(secret_hash)
    assert again is not None and again.id == session.id
    cached = await cache.get(secret_hash)
    assert cached is not None and cached[1] == 10**9


async def test_rate_limits_are_shared_between_nodes(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(
        client_factory, postgres_url, redis_url, redis_prefix, login_rate_limit_account="3/minute"
    )
    two = await node(
        client_factory, postgres_url, redis_url, redis_prefix, login_rate_limit_account="3/minute"
    )
    address = email()
    await one.register(address)
    bad = {"email": address, "password": "wrong password 123"}
    statuses = []
    for client in (one, two, one, two):
        statuses.append((await client.post("/v1/auth/login", json=bad)).status_code)
    assert statuses == [401, 401, 401, 429]


async def test_nonces_are_accepted_once_across_nodes(redis_url: str, redis_prefix: str) -> None:
    options = RedisOptions(url=redis_url, prefix=redis_prefix)
    first, second = make_client(options), make_client(options)
    try:
        stores = [RedisNonceStore(first, options), RedisNonceStore(second, options)]
        results = await asyncio.gather(*(s.add_if_absent("key-1:nonce-a", 30) for s in stores * 5))
        assert sorted(results) == [False] * 9 + [True]
        assert await stores[1].add_if_absent("key-1:nonce-b", 30) is True
        assert await stores[0].add_if_absent("key-1:nonce-c", 0) is False
    finally:
        await first.aclose()
        await second.aclose()


async def test_nonce_store_fails_closed_when_redis_is_down(private_redis: PrivateRedis) -> None:
    options = RedisOptions(
        url=private_redis.url, prefix="p", socket_timeout=0.3, connect_timeout=0.3
    )
    client = make_client(options)
    try:
        store = RedisNonceStore(client, options)
        assert await store.add_if_absent("n", 5) is True
        private_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.add_if_absent("m", 5)
    finally:
        await client.aclose()


async def test_bus_delivers_in_order_to_every_node_and_drops_malformed_messages(
    redis_url: str, redis_prefix: str
) -> None:
    options = RedisOptions(url=redis_url, prefix=redis_prefix)
    buses = [RedisBus(options), RedisBus(options)]
    received: list[list[dict[str, Any]]] = [[], []]
    for bus, inbox in zip(buses, received, strict=True):

        async def handler(message: dict[str, Any], inbox: list[dict[str, Any]] = inbox) -> None:
            inbox.append(message)

        bus.subscribe("realtime", handler)
        await bus.start()
    try:
        for bus in buses:
            assert await bus.wait_subscribed(10)
        raw = make_client(options)
        await raw.spublish(options.channel("realtime"), b"not json")
        await raw.spublish(options.channel("realtime"), json.dumps({"t": 0, "m": [1]}))
        await raw.aclose()
        for n in range(20):
            await buses[n % 2].publish("realtime", {"n": n})
        await eventually(lambda: _true(all(len(inbox) == 20 for inbox in received)))
        for inbox in received:
            assert [m["n"] for m in inbox] == list(range(20))
    finally:
        for bus in buses:
            await bus.close()


async def _true(value: bool) -> bool:
    return value


async def test_bus_reports_a_gap_on_loss_and_after_resubscribing(
    private_redis: PrivateRedis,
) -> None:
    options = RedisOptions(
        url=private_redis.url, prefix="gap", socket_timeout=0.3, connect_timeout=0.3
    )
    bus = RedisBus(options, max_backoff=0.1)
    gaps: list[bool] = []
    got: list[dict[str, Any]] = []

    async def on_gap() -> None:
        gaps.append(bus.healthy)

    async def handler(message: dict[str, Any]) -> None:
        got.append(message)

    bus.subscribe("control", handler)
    bus.on_gap(on_gap)
    await bus.start()
    try:
        assert await bus.wait_subscribed(10)
        assert bus.healthy and gaps == []
        private_redis.stop()
        await eventually(lambda: _true(not bus.healthy))
        with pytest.raises(StoreUnavailable):
            await bus.publish("control", {"type": "lost"})
        assert gaps == [False]  # reported as soon as the loss is seen
        private_redis.start()
        await eventually(lambda: _true(bus.healthy and len(gaps) == 2))
        assert gaps == [False, True] and bus.reconnects == 1
        await bus.publish("control", {"type": "after"})
        await eventually(lambda: _true(got == [{"type": "after"}]))
    finally:
        await bus.close()


async def test_a_revoked_access_token_lands_in_the_shared_revoked_jti_set(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    two = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    signin = await one.post(
        "/v1/auth/login", json={"email": address, "password": PASSWORD, "mode": "token"}
    )
    assert signin.status_code == 200, signin.text
    token = signin.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await two.get("/v1/me", headers=bearer)).status_code == 200
    issued = jwt.decode(token, options={"verify_signature": False})
    await one.container.tokens.revoke_jti(issued["jti"], datetime.fromtimestamp(issued["exp"], UTC))
    shared = two.container.cluster.revoked_tokens
    assert shared is not None
    await eventually(lambda: shared.contains(issued["jti"]))
    refused = await two.get("/v1/me", headers=bearer)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"


async def test_readiness_and_metrics_show_redis_the_bus_and_the_node(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    two = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    await one.login(address)
    for _ in range(3):
        assert (await one.get("/v1/me")).status_code == 200
    await one.post("/v1/auth/logout")  # one bus message, delivered to both nodes

    async def both_listed() -> Any:
        ready = await two.get("/readyz", params={"verbose": 1})
        nodes = ready.json()["cluster"]["nodes"]
        return ready if len([n for n in nodes if n["alive"]]) >= 2 else None

    ready = await eventually(both_listed)
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"]["redis"]["ok"] and body["checks"]["redis"]["fallback"] == "none"
    assert body["checks"]["redis"]["pool"]["max"] == 64
    assert body["checks"]["bus"] == {
        "ok": True,
        "kind": "redis",
        "reconnects": 0,
        "error": None,
        "channels": body["checks"]["bus"]["channels"],
        "servers": {"control": "redis", "realtime": "redis"},
        "required": True,
    }
    assert body["checks"]["redis"]["mode"] == "single"
    assert "control" in body["checks"]["bus"]["channels"]
    me = body["cluster"]["node"]
    assert me["id"] == two.container.control.node_id
    assert [n["self"] for n in body["cluster"]["nodes"] if n["id"] == me["id"]] == [True]
    metrics = (await one.get("/metrics")).text
    for name in (
        "watchword_bus_lag_seconds_count",
        "watchword_redis_pool_max",
        "watchword_session_cache_hit_ratio",
        "watchword_db_pool_size",
        'watchword_redis_session_lookups_total{result="miss"}',
    ):
        assert name in metrics, name
    lag = next(
        line for line in metrics.splitlines() if line.startswith("watchword_bus_lag_seconds_count")
    )
    assert float(lag.split()[-1]) >= 1


async def test_closing_the_bus_at_any_moment_ends_its_loop(
    redis_url: str, redis_prefix: str
) -> None:
    options = RedisOptions(url=redis_url, prefix=redis_prefix)
    for pause in (0.0, 0.001, 0.01, 0.05):
        bus = RedisBus(options)
        await bus.start()
        await bus.publish("control", {"type": "x"})
        await asyncio.sleep(pause)
        tasks = [link.task for link in bus._links.values()]
        assert tasks and all(task is not None for task in tasks)
        await asyncio.wait_for(bus.close(), 30)  # a hang guard, not a measurement
        assert all(task is not None and task.done() for task in tasks) and not bus.healthy
        await bus.close()  # twice is harmless
