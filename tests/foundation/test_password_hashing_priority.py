"""Password hashing runs in threads of its own, below the event loop's priority, so a storm of
sign-ins cannot starve everyone else's requests of the CPU."""

from __future__ import annotations

import os
import threading

from tests.conftest import AppFactory
from watchword.domain.passwords import PasswordHasher


class RecordingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_kib=8, parallelism=1)
        self.seen: list[tuple[str, int]] = []

    def _note(self) -> None:
        tid = threading.get_native_id()
        self.seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, tid)))

    def hash(self, password: str) -> str:
        self._note()
        return super().hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        self._note()
        return super().verify(password_hash, password)


async def test_hashing_and_verifying_run_in_lower_priority_threads(
    app_factory: AppFactory,
) -> None:
    _, container = await app_factory()
    hasher = RecordingHasher()
    container.accounts._hasher = hasher  # the service's own hasher, as wired
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hashed = await container.accounts.hash_password("a long enough password")
    assert await container.accounts.verify_password(hashed, "a long enough password")
    assert len(hasher.seen) == 2
    for name, niceness in hasher.seen:
        assert name.startswith("watchword-hash")
        assert niceness > base
