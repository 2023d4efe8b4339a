"""Throttling on the ``limits`` library: one moving-window limiter, and the sign-in budgets."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.exceptions import RedisClusterUnreachableError, SlotNotCoveredError

from watchword.domain.errors import RateLimited, StoreUnavailable

# On a Redis Cluster, failures the storage does not wrap (they are not ``RedisError``s).
CLUSTER_FAILURES = (SlotNotCoveredError, RedisClusterUnreachableError)


class RateLimiter:
    """Moving-window budgets on one storage: in memory on one node, Redis in a cluster (so
    every node counts against the same budgets). A storage that cannot answer raises
    ``StoreUnavailable``: a limit that cannot be checked fails closed."""

    def __init__(
        self, *, storage_uri: str | None = None, storage_options: dict[str, Any] | None = None
    ) -> None:
        storage = (
            storage_from_string(storage_uri, **(storage_options or {}))
            if storage_uri
            else MemoryStorage()
        )
        if not isinstance(storage, Storage):
            raise ValueError("rate-limit storage must be an async+ URI")
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, *keys: str) -> int:
        """Spend one unit; 0 when it was within budget, else seconds until it is again."""
        async with _fail_closed():
            if await self._limiter.hit(item, *keys):
                return 0
            return await self._retry_after(item, *keys)

    async def test(self, item: RateLimitItem, *keys: str) -> int:
        """Like ``hit`` without spending anything."""
        async with _fail_closed():
            if await self._limiter.test(item, *keys):
                return 0
            return await self._retry_after(item, *keys)

    async def _retry_after(self, item: RateLimitItem, *keys: str) -> int:
        stats = await self._limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))


@asynccontextmanager
async def _fail_closed() -> AsyncIterator[None]:
    try:
        yield
    except (ConnectionError, OSError, TimeoutError, StorageError, *CLUSTER_FAILURES) as exc:
        raise StoreUnavailable("The rate-limit store is unavailable.") from exc


class LoginThrottle:
    """Sign-in budgets: every attempt per client address, failures per account."""

    def __init__(self, *, limiter: RateLimiter, per_account: str, per_ip: str) -> None:
        self._limiter = limiter
        self._per_account: RateLimitItem = parse(per_account)
        self._per_ip: RateLimitItem = parse(per_ip)

    async def check(self, *, account: str, ip: str | None) -> None:
        """Count this attempt against the address; refuse if either budget is spent."""
        if ip and (retry_after := await self._limiter.hit(self._per_ip, "login-ip", ip)):
            raise RateLimited(retry_after)
        if retry_after := await self._limiter.test(self._per_account, "login-account", account):
            raise RateLimited(retry_after)

    async def failed(self, *, account: str) -> None:
        """Only failures spend the account's budget, so a user is not locked out by success."""
        await self._limiter.hit(self._per_account, "login-account", account)
