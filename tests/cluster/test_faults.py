"""Each failure decision of docs/operations.md, on the real PostgreSQL and a private Redis."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.cluster.conftest import PrivateRedis, TcpProxy, eventually
from tests.cluster.test_two_apps import email, node, same_browser
from tests.conftest import ClientFactory
from tests.helpers import PASSWORD
from watchword.domain.sessions import RevokeReason
from watchword.services.context import CLI

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _true(value: bool) -> bool:
    return value


async def status_of(client: Any, path: str = "/v1/me") -> int:
    return int((await client.get(path)).status_code)


async def test_redis_down_fails_closed_and_recovers_without_losing_a_revocation(
    client_factory: ClientFactory, postgres_url: str, private_redis: PrivateRedis
) -> None:
    one = await node(client_factory, postgres_url, private_redis.url, "faults")
    two = await node(client_factory, postgres_url, private_redis.url, "faults")
    address = email()
    await one.register(address)
    await one.login(address)
    same_browser(one, two)
    me = await two.get("/v1/me")
    assert me.status_code == 200
    session_id = me.json()["session"]["id"]

    private_redis.stop()
    await eventually(lambda: _true(not one.container.bus.healthy))
    await eventually(lambda: _true(not two.container.bus.healthy))
    # No one is let in while the revocation state cannot be checked...
    refused = await one.get("/v1/me")
    assert refused.status_code == 503 and refused.json()["error"] == "service_unavailable"
    # ...nor signs in without the shared rate limiter.
    login = await two.post("/v1/auth/login", json={"email": address, "password": "x" * 12})
    assert login.status_code == 503
    ready = await one.get("/readyz", params={"verbose": 1})
    assert ready.status_code == 503

    # An operator revokes on node two while Redis is down (the CLI path: the database only).
    await two.container.sessions.revoke(session_id, RevokeReason.ADMIN, CLI)
    cache = two.container.cluster.session_cache
    assert cache is not None and session_id in cache.pending

    private_redis.start()
    await eventually(lambda: _true(one.container.bus.healthy and two.container.bus.healthy))
    # Back by itself; the revocation made meanwhile holds on every node...
    for client in (one, two):
        response = await client.get("/v1/me")
        assert response.status_code == 401 and response.json()["error"] == "session_revoked"
    # ...and the deferred Redis invalidation was replayed: no node can cache it again.
    await eventually(lambda: _true(not cache.pending))
    assert await cache.is_revoked(session_id)
    # A fresh sign-in works again.
    await one.login(address)
    assert await status_of(one) == 200
    assert (await one.get("/readyz")).status_code == 200


async def test_redis_down_with_database_fallback_keeps_session_checks_going(
    client_factory: ClientFactory, postgres_url: str, private_redis: PrivateRedis
) -> None:
    one = await node(
        client_factory, postgres_url, private_redis.url, "fallback", redis_fallback="database"
    )
    address = email()
    await one.register(address)
    await one.login(address)
    me = await one.get("/v1/me")
    session_id = me.json()["session"]["id"]
    private_redis.stop()
    await eventually(lambda: _true(not one.container.bus.healthy))
    # The gap flushed the in-process cache; the check reads the database instead.
    assert await status_of(one) == 200
    # Sign-in still needs the shared rate limiter: closed.
    login = await one.post("/v1/auth/login", json={"email": address, "password": "x" * 12})
    assert login.status_code == 503
    # A revocation by another process reaches this node through the durable feed.
    await one.container.db.sessions.revoke(
        session_id, RevokeReason.ADMIN, one.container.clock.now(), origin="elsewhere"
    )

    async def refused() -> bool:
        response = await one.get("/v1/me")
        return response.status_code == 401

    await eventually(refused, attempts=100, interval=0.1)
    private_redis.start()
    await eventually(lambda: _true(one.container.bus.healthy))
    assert await status_of(one) == 401


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_postgres_down_refuses_sign_in_and_writes_and_writes_nothing_half(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        one = await node(
            client_factory,
            _via(postgres_url, proxy.port),
            redis_url,
            redis_prefix,
            db_timeout=1.0,
        )
        address = email()
        await one.register(address)
        await one.login(address)
        assert await status_of(one) == 200
        token_login = await one.post(
            "/v1/auth/login", json={"email": address, "password": PASSWORD, "mode": "token"}
        )
        assert token_login.status_code == 200, token_login.text
        bearer = {"Authorization": f"Bearer {token_login.json()['access_token']}"}
        me = await one.get("/v1/me", headers=bearer)
        assert me.status_code == 200 and me.json()["authentication"]["method"] != "cookie"
        users_before = await one.container.db.users.count()

        await proxy.cut()
        login = await one.post("/v1/auth/login", json={"email": address, "password": "x" * 12})
        assert login.status_code == 503 and login.json()["error"] == "service_unavailable"
        register = await one.post("/v1/users", json={"email": email(), "password": "y" * 12})
        assert register.status_code == 503
        # A session this node already verified keeps working from memory: nothing can be
        # revoked while the database is down, since a revocation is a database write.
        assert await status_of(one) == 200
        # Access tokens verify locally (signature, expiry, revoked set): no database needed.
        for _ in range(3):
            assert (await one.get("/v1/me", headers=bearer)).status_code == 200
        # A refresh is a database write: refused, and nothing rotated.
        refresh = await one.post(
            "/v1/auth/refresh", json={"refresh_token": token_login.json()["refresh_token"]}
        )
        assert refresh.status_code == 503
        assert (await one.get("/readyz")).status_code == 503

        await proxy.restore()

        async def database_back() -> bool:
            return (await one.get("/readyz")).status_code == 200

        await eventually(database_back, attempts=100, interval=0.1)
        assert await one.container.db.users.count() == users_before
        await one.login(address)
        assert await status_of(one) == 200
        # The refresh token refused during the outage was never spent: it rotates now.
        refresh = await one.post(
            "/v1/auth/refresh", json={"refresh_token": token_login.json()["refresh_token"]}
        )
        assert refresh.status_code == 200, refresh.text
    finally:
        await proxy.cut()
