"""One store read per key at a time: callers that miss the cache together share the read.

When a hot credential's cache entry expires under load, every request in flight misses at
once; without this each one reads the store (and the rate-limit store before it), and a
loaded store answers late enough to fail the requests closed with 503. A caller that is
cancelled (its client went away) does not cancel the read the others are waiting for.

``refresh`` starts the same read with nobody waiting on it: a cache renews a hot entry in the
background before its age limit (``REFRESH_AHEAD``), so under steady traffic no request
waits on the store at all. Measured before it: every 30 s (the caches' age limit), all 64
requests in flight on one user waited 280 to 400 ms behind 64 reads of the same row, with
the event loop idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# The fraction of a cache's age limit after which a hit also starts a background refresh.
REFRESH_AHEAD = 0.5


def refresh_age(ttl: float) -> float:
    """From this age (seconds) an entry is still served, and renewed in the background. The
    caches keep it, and compare one float on every hit."""
    return ttl * REFRESH_AHEAD


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def flying(self, key: str) -> bool:
        """A read of ``key`` is under way (joining it costs the store nothing)."""
        return key in self._flights

    async def run(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(self._flight(key, read))

    def refresh(self, key: str, read: Callable[[], Awaitable[T]]) -> None:
        """Start ``read`` unless one of ``key`` is under way, and wait for nothing: its result
        lands where ``read`` puts it, its error (a store down, a credential gone) is the next
        foreground read's to meet."""
        self._flight(key, read)

    def _flight(self, key: str, read: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return flight

    def _landed(self, key: str, flight: asyncio.Future[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too, in case every caller was cancelled


__all__ = ["REFRESH_AHEAD", "SingleFlight", "refresh_age"]
