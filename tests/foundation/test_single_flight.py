"""Callers that miss a cache together share one store read."""

from __future__ import annotations

import asyncio

import pytest

from watchword.services.single_flight import SingleFlight


async def test_concurrent_callers_share_one_read_and_a_later_caller_reads_again() -> None:
    flights: SingleFlight[int] = SingleFlight()
    reads = 0
    gate = asyncio.Event()

    async def read() -> int:
        nonlocal reads
        reads += 1
        await gate.wait()
        return reads

    callers = [asyncio.ensure_future(flights.run("k", read)) for _ in range(10)]
    await asyncio.sleep(0)
    assert flights.flying("k") and not flights.flying("other")
    gate.set()
    assert await asyncio.gather(*callers) == [1] * 10
    assert not flights.flying("k")
    assert await flights.run("k", read) == 2  # landed reads are not reused


async def test_a_failed_read_reaches_every_caller() -> None:
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def read() -> int:
        await gate.wait()
        raise LookupError("store down")

    callers = [asyncio.ensure_future(flights.run("k", read)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert len(flights) == 0


async def test_a_cancelled_caller_does_not_cancel_the_read_of_the_others() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        return "row"

    leaving = asyncio.ensure_future(flights.run("k", read))
    staying = asyncio.ensure_future(flights.run("k", read))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.set()
    assert await staying == "row"
