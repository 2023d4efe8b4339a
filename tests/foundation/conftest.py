"""Helpers for the foundation's HTTP tests: apps with a chosen password hasher."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.conftest import BASE_URL, Client
from tests.helpers import ManualClock
from watchword.config import Settings
from watchword.domain.passwords import PasswordHasher
from watchword.services.container import Container
from watchword.web.app import create_app


class CountingHasher(PasswordHasher):
    """A real argon2id hasher that counts calls and the most threads inside it at once.

    With ``gate`` set, ``verify`` blocks its worker thread until the gate opens.
    """

    def __init__(self, *, time_cost: int = 1, memory_kib: int = 8) -> None:
        super().__init__(time_cost=time_cost, memory_kib=memory_kib, parallelism=1)
        self.verified: list[str | None] = []
        self.hashed = 0
        self.inside = 0
        self.max_inside = 0
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def hash(self, password: str) -> str:
        self._enter()
        try:
            self.hashed += 1
            return super().hash(password)
        finally:
            self._leave()

    def verify(self, password_hash: str | None, password: str) -> bool:
        self._enter()
        try:
            self.verified.append(password_hash)
            if self.gate is not None:
                self.gate.wait(timeout=30)
            return super().verify(password_hash, password)
        finally:
            self._leave()


HasherClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def hasher_client(
    settings_factory: Callable[..., Settings], clock: ManualClock
) -> AsyncIterator[HasherClientFactory]:
    """Like ``client_factory``, with the password hasher given (apps share one database)."""
    stack: list[tuple[Any, Client, Container]] = []

    async def make(hasher: PasswordHasher, **overrides: Any) -> Client:
        settings = settings_factory(**overrides)
        container = Container(settings, clock=clock, hasher=hasher)
        await container.db.upgrade()  # type: ignore[attr-defined]
        app = create_app(settings, container=container)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = Client(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        client.container = container
        stack.append((lifespan, client, container))
        return client

    yield make
    for lifespan, client, container in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
        await container.db.close()


def set_cookie(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """(name, value, attributes lower-cased) of the one Set-Cookie of a response."""
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    parsed = SimpleCookie()
    parsed.load(headers[0])
    ((name, morsel),) = parsed.items()
    flags = {part.strip().split("=")[0].lower() for part in headers[0].split(";")[1:]}
    attributes = {k.lower(): str(v) for k, v in morsel.items() if v}
    attributes.update({flag: "" for flag in flags if flag in ("secure", "httponly")})
    return name, morsel.value, attributes
