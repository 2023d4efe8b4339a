"""Redis adapters for the hot path: session cache, revoked sets, nonces (the bus is bus/redis)."""

from watchword.stores.redis.client import REDIS_FAILURES, RedisOptions, make_client
from watchword.stores.redis.nonces import RedisNonceStore
from watchword.stores.redis.revocations import RedisRevokedTokens
from watchword.stores.redis.sessions import (
    RedisCachedDatabase,
    RedisCachedSessionStore,
    RedisSessionCache,
)

__all__ = [
    "REDIS_FAILURES",
    "RedisCachedDatabase",
    "RedisCachedSessionStore",
    "RedisNonceStore",
    "RedisOptions",
    "RedisRevokedTokens",
    "RedisSessionCache",
    "make_client",
]
