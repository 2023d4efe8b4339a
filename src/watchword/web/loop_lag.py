"""How late the event loop runs, measured from inside the server.

A timer due every ``INTERVAL`` records by how much it overslept: everything that holds the
loop (a long garbage collection, a blocking call, a slow handler) delays every request waiting
for it, and shows here. A slow p99 measured by a client, with no lag here, was not caused by the
loop (the benchmarks print both). The cost: one wake-up per ``INTERVAL``.
"""

from __future__ import annotations

import asyncio

from watchword.web import metrics

INTERVAL = 0.02  # seconds: a stall as short as this is still seen


async def watch_loop_lag(interval: float = INTERVAL) -> None:
    """Record the loop's lag until cancelled."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        metrics.LOOP_LAG.observe(lag)
        if lag > longest:
            longest = lag
            metrics.LOOP_LAG_MAX.set(lag)
