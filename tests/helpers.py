"""Shared by the suite: a clock that tests move, a cheap password hasher, and the plumbing
to run `watchword serve` as a real process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from watchword.domain.passwords import PasswordHasher


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def cookie_header(client: httpx.AsyncClient) -> dict[str, str]:
    """The client's session cookie as a header, for a request made without its jar."""
    return {"Cookie": f"watchword_session={client.cookies['watchword_session']}"}


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny parameters: the same code path, a thousandth of the cost."""
    return PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)


TEST_SECRET_KEY = "test-master-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"


WATCHWORD = str(Path(sys.executable).with_name("watchword"))


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Lets the event loop run until ``check`` holds (a bounded number of turns, about 10 s)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    path: str = "/healthz",
    within: float = 30.0,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``url + path`` until it answers 200. Raise with the server's ``output`` if the
    process exits first or ``within`` seconds pass (a bound on start-up, never a result)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"watchword serve exited:\n{output()[-2000:]}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"watchword serve did not answer {path} in {within:.0f} s:\n{output()[-2000:]}"
    )


class LateReads:
    """Wraps a store read: counts the calls and answers late, as a loaded store would, so
    that requests arriving together all miss the cache while the first read is out."""

    def __init__(self, read: Callable[[str], Awaitable[Any]], delay: float = 0.05) -> None:
        self._read = read
        self._delay = delay
        self.calls = 0

    async def __call__(self, key: str) -> Any:
        self.calls += 1
        await asyncio.sleep(self._delay)
        return await self._read(key)
