"""The cluster's revoked-``jti`` set: one Redis key per revoked access token, expiring with it.

Other services sharing the Redis can check a token id without calling Watchword. Each node
also keeps its own in-memory set (fed by the control feed); this set is the shared copy.
"""

from __future__ import annotations

import math

from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis.client import REDIS_FAILURES, RedisClient, RedisOptions


class RedisRevokedTokens:
    def __init__(self, client: RedisClient, options: RedisOptions) -> None:
        self._client = client
        self._options = options

    def _key(self, jti: str) -> str:
        return self._options.key("rjti", jti)

    async def add(self, jti: str, expires_at: float, now: float) -> None:
        """Remember ``jti`` until ``expires_at`` (epoch seconds); past tokens need nothing."""
        ttl_ms = math.ceil((expires_at - now) * 1000)
        if ttl_ms <= 0:
            return
        try:
            await self._client.set(self._key(jti), b"1", px=ttl_ms)
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The revocation set (Redis) is unavailable.") from exc

    async def contains(self, jti: str) -> bool:
        try:
            return bool(await self._client.exists(self._key(jti)))
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The revocation set (Redis) is unavailable.") from exc
