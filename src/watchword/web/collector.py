"""Python's garbage collector in a server holding ten thousand sockets: survivors frozen.

A full collection walks every object the collector tracks, and the event loop waits until it
is done. What the server builds at start is frozen out of its sight (``app_from_env``). The
gateway's sockets come later, each tracked as about 67 objects (uvicorn's connection,
wsproto's, Watchword's). At 10,000 sockets a full collection walked some 670,000 objects and
held the loop 400 to 500 ms (measured in the server), and one fell on a logout under way: 520
ms from the request to its socket's close. CPython runs one whenever the objects that reached
the oldest generation since the last one grow to a quarter of those it kept, so a growing or
renewing population of sockets keeps bringing them back.

So once the oldest generation holds at least ``FREEZE_AT`` objects (looked at every
``CHECK_INTERVAL``), the server runs a full collection itself, which walks only those, and
freezes what survives it (``gc.freeze()``): at that moment every one of them is reachable, the
collection having just freed the rest. Later full collections walk only what came after.
(Not from a ``gc.callbacks`` hook: CPython calls one, with a new dict, at the start and end
of every collection, the young ones included.)

The price: a frozen object freed by reference counting goes as ever (a closed socket does:
tests/realtime/test_served_socket_memory.py), but one that ends in a reference cycle (an HTTP
connection of uvicorn's that was open when its objects were frozen, about 20 objects) stays
until a compaction: ``gc.unfreeze()`` and one full collection, one long pause (about 0.6 s
at 10,000 sockets). A compaction runs when the frozen part has doubled since the last one
(its garbage included), and at most once per ``COMPACT_INTERVAL``. Sockets that come and go
do not double it: a closed socket's objects leave the frozen part as they are freed, so a
steady population renewing itself is frozen again and again (``frozen_since`` grows) while
the frozen part stays its size, and no compaction runs for it.

Sockets that stay do double it: a server started again, its sockets back, compacted once
their objects outnumbered what was frozen at start, and walked them all to free next to
nothing (in a probe with 5,000 sockets open: 304 and 372 ms, freeing 3,430 and 2,128 objects
of about 450,000). So the gateway's growth since the last compaction (``population``: its
open sockets) counts as live, ``SOCKET_OBJECTS`` each: the frozen part must double beyond it,
which takes as much garbage as there is live.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from watchword.web import metrics

log = logging.getLogger("watchword.collector")

FREEZE_AT = 10_000  # objects in the oldest generation: about 150 sockets' worth
COMPACT_INTERVAL = 600.0  # seconds between compactions, at least
CHECK_INTERVAL = 0.25  # seconds between looks at the oldest generation
# Objects an open socket keeps frozen, as growth to allow for: 55 counted per socket on a
# served gateway, 67 with the rest of a 10,000-socket heap. Over half the true figure is
# enough for growth alone never to call a compaction.
SOCKET_OBJECTS = 60


class SurvivorFreezer:
    """Freezes the oldest generation's survivors once they are many; compacts the frozen
    part now and then. One per process, run by the served app's lifespan."""

    def __init__(
        self,
        *,
        freeze_at: int = FREEZE_AT,
        compact_interval: float = COMPACT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        population: Callable[[], int] = lambda: 0,
    ) -> None:
        self.freeze_at = freeze_at
        self.compact_interval = compact_interval
        self._clock = clock
        self._population = population  # the gateway's open sockets
        self.kept_at_compaction = gc.get_freeze_count()  # walks the frozen objects: once
        self.population_at_compaction = population()
        self.frozen_since = 0  # objects frozen since then (some may be gone by now)
        self._last_compaction = clock()

    def check(self) -> int:
        """Freeze the oldest generation's survivors if they are many; returns how many."""
        if len(gc.get_objects(generation=2)) < self.freeze_at:
            return 0
        gc.collect()  # walks the unfrozen objects only
        kept = len(gc.get_objects(generation=2))  # every younger generation merged into it
        gc.freeze()
        self.frozen_since += kept
        metrics.GC_FROZEN.inc(kept)
        return kept

    @property
    def compaction_due(self) -> bool:
        """Worth counting the frozen part: as many objects frozen since the last compaction as
        it kept, and the interval passed."""
        return (
            self.frozen_since >= max(self.kept_at_compaction, self.freeze_at)
            and self._clock() - self._last_compaction >= self.compact_interval
        )

    def compact(self) -> int:
        """Unfreeze, collect, freeze what survived: the frozen part's cyclic garbage is
        freed. Returns the objects collected."""
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.kept_at_compaction = gc.get_freeze_count()
        self.population_at_compaction = self._population()
        self.frozen_since = 0
        self._last_compaction = self._clock()
        metrics.GC_COMPACTIONS.inc()
        log.info(
            "collector compaction: %d objects freed, %d kept frozen, %.0f ms",
            collected,
            self.kept_at_compaction,
            (time.perf_counter() - started) * 1000,
        )
        return collected

    def live_since_compaction(self) -> int:
        """The frozen objects taken for live: those the last compaction kept, and the
        sockets opened since."""
        grown = max(0, self._population() - self.population_at_compaction)
        return self.kept_at_compaction + SOCKET_OBJECTS * grown

    def maybe_compact(self) -> bool:
        """Compact if due and the frozen part has really doubled beyond the sockets opened
        since. When it has not (what was frozen since was mostly freed again, or is the new
        sockets), look again an interval later: counting the frozen part walks it, so not
        every check."""
        if not self.compaction_due:
            return False
        frozen = gc.get_freeze_count()
        if frozen < 2 * self.live_since_compaction():
            self.frozen_since = max(0, frozen - self.kept_at_compaction)
            self._last_compaction = self._clock()
            return False
        self.compact()
        return True

    async def run(self, interval: float = CHECK_INTERVAL) -> None:
        """Freeze and compact when due, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if not self.maybe_compact():
                self.check()
