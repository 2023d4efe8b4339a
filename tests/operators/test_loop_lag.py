"""The event loop's lag, seen from inside the server: a held loop shows on /metrics, so a slow
p99 measured by a client can be told apart from a stall of the server's own."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.conftest import Client
from watchword.web import metrics
from watchword.web.loop_lag import watch_loop_lag


def lag_samples() -> dict[str, float]:
    """The histogram's count, and how many samples were above 50 ms."""
    values = {
        s.name + s.labels.get("le", ""): s.value for s in metrics.LOOP_LAG.collect()[0].samples
    }
    count = values["watchword_event_loop_lag_seconds_count"]
    return {
        "count": count,
        "over_50ms": count - values["watchword_event_loop_lag_seconds_bucket0.05"],
    }


async def test_a_held_loop_is_recorded_as_lag() -> None:
    watch = asyncio.create_task(watch_loop_lag(interval=0.005))
    try:
        await asyncio.sleep(0.03)
        before = lag_samples()
        time.sleep(0.12)  # holds the loop, as a blocking call would
        await asyncio.sleep(0.03)
        after = lag_samples()
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    assert after["count"] > before["count"]
    assert after["over_50ms"] == before["over_50ms"] + 1  # one late wake-up, not one per tick
    assert metrics.LOOP_LAG_MAX.collect()[0].samples[0].value >= 0.1


async def test_a_running_server_measures_its_loop_and_shows_it_on_metrics(client: Client) -> None:
    first = lag_samples()["count"]
    await asyncio.sleep(0.15)
    assert lag_samples()["count"] > first  # started with the app
    text = (await client.get("/metrics")).text
    assert "watchword_event_loop_lag_seconds_bucket" in text
    assert "watchword_event_loop_lag_max_seconds" in text
