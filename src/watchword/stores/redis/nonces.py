"""The cluster's nonce cache: a signed request's nonce is accepted once on any node.

``SET key 1 NX EX ttl`` is one atomic step, so two nodes racing with the same nonce get one
``True`` between them. Redis down: ``StoreUnavailable`` (a replay cannot be ruled out: fail
closed).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis.client import REDIS_FAILURES, RedisClient, RedisOptions

if TYPE_CHECKING:
    from watchword.stores.nonces import NonceStore


class RedisNonceStore:
    def __init__(self, client: RedisClient, options: RedisOptions) -> None:
        self._client = client
        self._options = options

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        if ttl <= 0:
            return False
        try:
            stored = await self._client.set(
                self._options.key("nonce", key), b"1", nx=True, px=max(1, math.ceil(ttl * 1000))
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The nonce cache (Redis) is unavailable.") from exc
        return bool(stored)


if TYPE_CHECKING:

    def _is_nonce_store(store: RedisNonceStore) -> NonceStore:
        return store
