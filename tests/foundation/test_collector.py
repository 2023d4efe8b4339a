"""The oldest generation's survivors frozen once many, the frozen part compacted now and then.

Each test freezes objects of its own and unfreezes everything after it: nothing else in the
test process is frozen (only ``app_from_env`` freezes, in served processes).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AppFactory
from tests.foundation.procs import cli_env
from tests.helpers import ManualClock
from watchword.web.collector import SOCKET_OBJECTS, SurvivorFreezer


class Cyclic:
    def __init__(self) -> None:
        self.me = self


class Gateway:
    """What the freezer reads of the gateway: its open sockets."""

    sockets = 0


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def freezer(clock: ManualClock, gateway: Gateway) -> Iterator[SurvivorFreezer]:
    gc.collect()
    try:
        yield SurvivorFreezer(
            freeze_at=5_000,
            compact_interval=600.0,
            clock=clock.timestamp,
            population=lambda: gateway.sockets,
        )
    finally:
        gc.unfreeze()
        gc.collect()


def many() -> list[list[int]]:
    return [[n] for n in range(20_000)]  # lists: always tracked


def test_many_survivors_in_the_oldest_generation_are_frozen(freezer: SurvivorFreezer) -> None:
    kept = many()
    gc.collect()  # into the oldest generation
    garbage = Cyclic()
    gone = weakref.ref(garbage)
    del garbage
    before = gc.get_freeze_count()
    assert freezer.check() >= len(kept)
    assert gc.get_freeze_count() >= before + len(kept)
    assert freezer.frozen_since >= len(kept)
    # Frozen: out of every generation the collector walks. Collected first: what was
    # garbage then is not frozen.
    assert not any(obj is kept[0] for obj in gc.get_objects())
    assert gone() is None


def test_few_survivors_are_left_to_the_collector(clock: ManualClock) -> None:
    gc.collect()
    freezer = SurvivorFreezer(freeze_at=10**9, clock=clock.timestamp)
    try:
        kept = many()
        gc.collect()
        before = gc.get_freeze_count()
        assert freezer.check() == 0
        assert gc.get_freeze_count() == before
        assert freezer.frozen_since == 0
        assert any(obj is kept[0] for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()


def test_only_a_compaction_frees_a_frozen_cycle(
    freezer: SurvivorFreezer, clock: ManualClock
) -> None:
    cycle = Cyclic()
    gone = weakref.ref(cycle)
    padding = many()
    gc.collect()
    freezer.check()  # frozen, the cycle with the padding
    del cycle
    gc.collect()
    assert gone() is not None  # out of the collector's sight
    assert not freezer.compaction_due  # not before the interval
    clock.advance(600)
    assert freezer.compaction_due
    assert freezer.compact() >= 1
    assert gone() is None
    assert freezer.frozen_since == 0
    assert freezer.kept_at_compaction >= len(padding)


def test_a_compaction_waits_for_the_frozen_part_to_double(
    freezer: SurvivorFreezer, clock: ManualClock
) -> None:
    clock.advance(600)
    freezer.kept_at_compaction = 1_000_000
    freezer.frozen_since = 999_999
    assert not freezer.compaction_due
    freezer.frozen_since = 1_000_000
    assert freezer.compaction_due
    freezer.kept_at_compaction = 0
    freezer.frozen_since = 4_999  # never for fewer than ``freeze_at``
    assert not freezer.compaction_due


async def test_the_served_apps_lifespan_runs_the_freezer(app_factory: AppFactory) -> None:
    app, _ = await app_factory()
    app.state.collector = SurvivorFreezer()

    def running() -> bool:
        return any(task.get_name() == "watchword-collector" for task in asyncio.all_tasks())

    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        assert running()
    finally:
        await lifespan.__aexit__(None, None, None)
    assert not running()


async def test_running_it_freezes_then_compacts_when_due(
    freezer: SurvivorFreezer, clock: ManualClock
) -> None:
    kept = many()
    gc.collect()
    task = asyncio.create_task(freezer.run(interval=0.01))
    try:
        for _ in range(200):
            if freezer.frozen_since:
                break
            await asyncio.sleep(0.01)
        assert freezer.frozen_since >= len(kept)
        clock.advance(600)  # due: the frozen part more than doubled, the interval passed
        for _ in range(200):
            if not freezer.frozen_since:
                break
            await asyncio.sleep(0.01)
        assert freezer.frozen_since == 0
        assert freezer.kept_at_compaction >= len(kept)
    finally:
        task.cancel()


def test_no_compaction_while_what_was_frozen_is_freed_again(
    freezer: SurvivorFreezer, clock: ManualClock
) -> None:
    # A renewing population: frozen again and again, freed as it goes.
    for _ in range(3):
        batch = many()
        gc.collect()
        freezer.check()
        del batch
    base = gc.get_freeze_count()
    freezer.kept_at_compaction = base  # as if the last compaction had kept what is frozen now
    freezer.frozen_since = base  # counted cheaply: as much frozen since as it kept
    clock.advance(600)
    assert freezer.compaction_due  # the cheap precondition holds...
    assert freezer.maybe_compact() is False  # ...but the frozen part did not double
    assert gc.get_freeze_count() == base
    assert freezer.frozen_since == 0  # counted: it did not grow
    freezer.frozen_since = base  # as much frozen again at once
    assert not freezer.compaction_due  # counted again only an interval later
    clock.advance(600)
    assert freezer.compaction_due
    kept = many()
    gc.collect()
    freezer.check()
    freezer.kept_at_compaction = base // 2  # the frozen part doubled since
    freezer.frozen_since = base
    assert freezer.compaction_due
    assert freezer.maybe_compact() is True
    assert freezer.frozen_since == 0
    assert freezer.kept_at_compaction >= base + len(kept) - 1_000


def test_sockets_opened_since_the_last_compaction_are_taken_for_live(
    freezer: SurvivorFreezer, clock: ManualClock, gateway: Gateway
) -> None:
    opened = many()  # what the new sockets keep
    gc.collect()
    freezer.check()
    frozen = gc.get_freeze_count()
    freezer.kept_at_compaction = frozen // 3  # the frozen part tripled since
    freezer.frozen_since = frozen
    clock.advance(600)
    gateway.sockets = (frozen - frozen // 3) // SOCKET_OBJECTS + 1  # ...and the sockets did
    assert freezer.live_since_compaction() > frozen // 2
    assert freezer.maybe_compact() is False
    assert gc.get_freeze_count() == frozen  # not walked for nothing
    # As many objects, with the sockets gone: half of them can only be garbage.
    gateway.sockets = 7
    freezer.frozen_since = frozen
    clock.advance(600)
    assert freezer.maybe_compact() is True
    assert freezer.population_at_compaction == 7  # growth counts from here
    assert freezer.kept_at_compaction >= len(opened)
    gateway.sockets = 0  # closed sockets leave the frozen part as they go: nothing to take back
    assert freezer.live_since_compaction() == freezer.kept_at_compaction


def test_the_served_apps_freezer_counts_the_gateways_sockets(tmp_path: Path) -> None:
    # In a process of its own: ``app_from_env`` freezes what it built.
    probe = """
from watchword.web.app import app_from_env
from watchword.web.collector import SOCKET_OBJECTS

class Socket:
    id, user_id, session_id, channels = "c1", "u1", None, set()

app = app_from_env()
freezer = app.state.collector
before = freezer.live_since_compaction()
app.state.realtime.node.hub.add(Socket())
print(freezer.live_since_compaction() - before == SOCKET_OBJECTS)
"""
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path / 'collector.db'}")
    ran = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip().splitlines()[-1] == "True"
