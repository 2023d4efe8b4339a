"""Sign-in throttling per account and per client address, on the ``limits`` library."""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from watchword.domain.errors import RateLimited, StoreUnavailable


class LoginThrottle:
    def __init__(
        self,
        *,
        per_account: str,
        per_ip: str,
        storage_uri: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        storage = (
            storage_from_string(storage_uri, **(storage_options or {}))
            if storage_uri
            else MemoryStorage()
        )
        if not isinstance(storage, Storage):
            raise ValueError("rate-limit storage must be an async+ URI")
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_account: RateLimitItem = parse(per_account)
        self._per_ip: RateLimitItem = parse(per_ip)

    async def _retry_after(self, item: RateLimitItem, *keys: str) -> int:
        stats = await self._limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def check(self, *, account: str, ip: str | None) -> None:
        """Count this attempt against the address; refuse if either budget is spent."""
        try:
            if ip and not await self._limiter.hit(self._per_ip, "login-ip", ip):
                raise RateLimited(await self._retry_after(self._per_ip, "login-ip", ip))
            if not await self._limiter.test(self._per_account, "login-account", account):
                raise RateLimited(
                    await self._retry_after(self._per_account, "login-account", account)
                )
        except (ConnectionError, OSError, TimeoutError, StorageError) as exc:
            raise StoreUnavailable("The rate-limit store is unavailable.") from exc

    async def failed(self, *, account: str) -> None:
        """Only failures spend the account's budget, so a user is not locked out by success."""
        try:
            await self._limiter.hit(self._per_account, "login-account", account)
        except (ConnectionError, OSError, TimeoutError, StorageError) as exc:
            raise StoreUnavailable("The rate-limit store is unavailable.") from exc

    async def reset(self) -> None:
        await self._storage.reset()
