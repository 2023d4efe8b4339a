"""Survivors of large full collections frozen, the frozen part compacted now and then.

Each test freezes objects of its own and unfreezes everything after it: nothing else in the
test process is frozen (only ``app_from_env`` freezes, in served processes).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import AppFactory
from watchword.web.collector import SurvivorFreezer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def ticks() -> Clock:
    return Clock()


@pytest.fixture
def freezer(ticks: Clock) -> Iterator[SurvivorFreezer]:
    gc.collect()
    freezer = SurvivorFreezer(freeze_at=5_000, compact_interval=600.0, clock=ticks)
    freezer.install()
    try:
        yield freezer
    finally:
        freezer.uninstall()
        gc.unfreeze()
        gc.collect()


def test_a_full_collection_that_keeps_many_objects_freezes_them(
    freezer: SurvivorFreezer,
) -> None:
    before = gc.get_freeze_count()
    kept = [[n] for n in range(20_000)]  # lists: always tracked
    gc.collect()
    assert gc.get_freeze_count() >= before + len(kept)
    assert freezer.frozen_since >= len(kept)
    # Frozen: out of every generation the collector walks.
    assert not any(obj is kept[0] for obj in gc.get_objects())


def test_a_full_collection_that_keeps_few_objects_freezes_nothing(ticks: Clock) -> None:
    gc.collect()
    freezer = SurvivorFreezer(freeze_at=10**9, clock=ticks)
    freezer.install()
    try:
        kept = [[n] for n in range(20_000)]  # lists: always tracked
        before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == before
        assert freezer.frozen_since == 0
        assert any(obj is kept[0] for obj in gc.get_objects(generation=2))
    finally:
        freezer.uninstall()
        gc.unfreeze()


def test_only_a_compaction_frees_a_frozen_cycle(freezer: SurvivorFreezer, ticks: Clock) -> None:
    cycle = Cyclic()
    gone = weakref.ref(cycle)
    padding = [[n] for n in range(20_000)]  # lists: always tracked
    gc.collect()  # frozen, the cycle with the padding
    del cycle
    gc.collect()
    assert gone() is not None  # out of the collector's sight
    assert not freezer.compaction_due  # not before the interval
    ticks.now += 600
    assert freezer.compaction_due
    assert freezer.compact() >= 1
    assert gone() is None
    assert freezer.frozen_since == 0
    assert freezer.kept_at_compaction >= len(padding)


def test_a_compaction_waits_for_the_frozen_part_to_double(
    freezer: SurvivorFreezer, ticks: Clock
) -> None:
    ticks.now += 600
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
    freezer = SurvivorFreezer()
    app.state.collector = freezer
    callbacks_before: list[Any] = list(gc.callbacks)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        assert gc.callbacks == [*callbacks_before, freezer._on_collection]
    finally:
        await lifespan.__aexit__(None, None, None)
    assert gc.callbacks == callbacks_before
