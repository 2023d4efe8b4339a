"""A bounded in-process cache with an age limit and an invalidation count.

Every hot credential cache (API keys, signing keys, opaque tokens, a bearer token's account)
is one: a stale entry is read from the store again, a hot one is renewed in the background
before its limit (``lookup``'s second answer), and ``generation`` keeps a read that began
before an invalidation from putting back what it removed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from watchword.domain.clock import monotonic
from watchword.services.single_flight import refresh_age

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """LRU with a time-to-live: a stale entry is re-read from the store, so a missed
    invalidation event cannot keep a revoked credential alive for longer than ``ttl``.

    ``generation`` counts invalidations: a read that began before one (a revocation that
    arrived while the row was on its way) must not be cached, or it would bring the revoked
    credential back for a whole ``ttl``; ``put(..., read_at=generation)`` then skips it."""

    def __init__(self, *, max_size: int, ttl: float) -> None:
        self._max = max_size
        self._ttl = ttl
        self._due_age = refresh_age(ttl)
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        return self.lookup(key)[0]

    def lookup(self, key: str) -> tuple[V | None, bool]:
        """The live value (None: absent or expired) and whether it is old enough to be
        re-read in the background (``SingleFlight.refresh``): one lookup, one clock read."""
        item = self._entries.get(key)
        if item is None:
            return None, False
        age = monotonic() - item[0]
        if age >= self._ttl:
            del self._entries[key]
            return None, False
        return item[1], age >= self._due_age

    def put(self, key: str, value: V, *, read_at: int | None = None) -> None:
        if read_at is not None and read_at != self.generation:
            return
        self._entries[key] = (monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        self.generation += 1
        self._entries.pop(key, None)

    def drop_where(self, predicate: Callable[[V], bool]) -> None:
        self.generation += 1
        for key in [k for k, (_, v) in self._entries.items() if predicate(v)]:
            del self._entries[key]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
