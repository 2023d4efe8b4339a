"""Replay protection for signed requests: a nonce is accepted once while it could be valid.

``NonceStore`` is the contract; ``MemoryNonceStore`` serves one node (the Redis adapter of the
cluster issue shares it between nodes).
"""

from __future__ import annotations

import heapq
from typing import Protocol

from watchword.domain.clock import monotonic


class NonceStore(Protocol):
    async def add_if_absent(self, key: str, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; False if it was already there (a replay)."""
        ...


class MemoryNonceStore:
    """Bounded: past ``max_entries`` live nonces new ones are refused (fail closed)."""

    def __init__(self, *, max_entries: int = 1_000_000) -> None:
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._max = max_entries

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            until, key = heapq.heappop(self._expiry)
            if self._until.get(key) == until:
                del self._until[key]

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        now = monotonic()
        self._prune(now)
        if key in self._until or len(self._until) >= self._max:
            return False
        until = now + ttl
        self._until[key] = until
        heapq.heappush(self._expiry, (until, key))
        return True

    def __len__(self) -> int:
        return len(self._until)
