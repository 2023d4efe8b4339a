"""Test doubles shared by the suite: a clock that tests move, a cheap password hasher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchword.domain.passwords import PasswordHasher


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny parameters: the same code path, a thousandth of the cost."""
    return PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)


TEST_SECRET_KEY = "test-master-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"
