"""A burst of more concurrent Redis commands than a pool holds waits for connections instead
of failing closed on a healthy Redis; a Redis that is really gone still fails closed."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from tests.helpers import TEST_SECRET_KEY, free_port
from watchword.config import Settings
from watchword.domain.errors import StoreUnavailable
from watchword.services.cluster import rate_limit_storage, redis_options
from watchword.services.ratelimit import RateLimiter
from watchword.stores.redis.client import make_client

pytestmark = pytest.mark.redis

BURST = 64


def settings(url: str, prefix: str, **extra: object) -> Settings:
    return Settings(
        secret_key=TEST_SECRET_KEY,
        redis_url=url,
        redis_prefix=prefix,
        redis_max_connections=8,  # rate limits get a quarter of it: 2 connections
        **extra,
    )


async def test_a_burst_beyond_the_pool_waits_for_connections(
    redis_url: str, redis_prefix: str
) -> None:
    options = redis_options(settings(redis_url, redis_prefix))
    assert options is not None
    client = make_client(options)
    key = f"{redis_prefix}:burst"
    try:
        results = await asyncio.gather(*(client.incr(key) for _ in range(BURST)))
        assert sorted(results) == list(range(1, BURST + 1))
        assert client.connection_pool.max_connections == 8  # the pool really was smaller
    finally:
        await client.delete(key)
        await client.aclose()


async def test_rate_limit_checks_beyond_the_pool_wait_for_connections(
    redis_url: str, redis_prefix: str
) -> None:
    uri, options = rate_limit_storage(settings(redis_url, redis_prefix))
    limiter = RateLimiter(storage_uri=uri, storage_options=options)
    budget = parse("1000/minute")
    results = await asyncio.gather(
        *(limiter.test(budget, "burst", str(n)) for n in range(BURST)), return_exceptions=True
    )
    assert results == [0] * BURST


async def test_an_unreachable_redis_still_fails_closed(redis_prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    uri, options = rate_limit_storage(
        settings(url, redis_prefix, redis_connect_timeout=0.5, redis_socket_timeout=0.5)
    )
    limiter = RateLimiter(storage_uri=uri, storage_options=options)
    with pytest.raises(StoreUnavailable, match="rate-limit store"):
        await limiter.test(parse("10/minute"), "gone")
