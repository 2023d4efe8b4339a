"""Background loops (mail, back-channel logout, the revocation feed) stop when cancelled,
even when the cancellation lands just as something wakes them: shutting down never hangs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from watchword.services.wakeup import wait_for_wake


async def _loop(wake: asyncio.Event, rounds: list[int]) -> None:
    while True:
        await wait_for_wake(wake, 60)
        rounds.append(1)


@pytest.mark.parametrize("ticks_between", range(6))
async def test_a_cancel_that_lands_as_the_loop_wakes_still_stops_it(ticks_between: int) -> None:
    wake = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_loop(wake, rounds))
    await asyncio.sleep(0)  # the loop is waiting
    wake.set()
    for _ in range(ticks_between):
        await asyncio.sleep(0)
    task.cancel()
    # A loop that lost its cancellation would wait out its 60 s poll and go round again;
    # the guard only turns such a hang into a failure.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


async def test_a_loop_whose_round_swallowed_its_cancellation_still_stops() -> None:
    """A round's work (an HTTP client, a driver) may catch the CancelledError meant for the
    loop and carry on; the next wait sees the request the task still counts, and stops."""
    wake = asyncio.Event()
    in_round = asyncio.Event()

    async def swallowing_loop() -> None:
        while True:
            await wait_for_wake(wake, 60)
            in_round.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)  # the round's work, cancelled here and swallowed

    task = asyncio.create_task(swallowing_loop())
    await asyncio.sleep(0)
    wake.set()
    await in_round.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)  # a hang turned into a failure
    assert task in done and task.cancelled()


async def test_the_wait_ends_on_wake_or_after_its_interval_and_clears_the_wake() -> None:
    wake = asyncio.Event()
    wake.set()
    await wait_for_wake(wake, 60)  # already set: returns at once
    assert not wake.is_set()
    await wait_for_wake(wake, 0.01)  # nothing wakes it: the interval passes
    assert not wake.is_set()
