"""One store read per key at a time: callers that miss the cache together share the read.

When a hot credential's cache entry expires under load, every request in flight misses at
once; without this each one reads the store (and the rate-limit store before it), and a
loaded store answers late enough to fail the requests closed with 503. A caller that is
cancelled (its client went away) does not cancel the read the others are waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def flying(self, key: str) -> bool:
        """A read of ``key`` is under way (joining it costs the store nothing)."""
        return key in self._flights

    async def run(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Future[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too, in case every caller was cancelled


__all__ = ["SingleFlight"]
