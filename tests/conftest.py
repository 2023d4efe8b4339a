"""Shared fixtures: an app on a fresh SQLite file, and the real PostgreSQL and Redis.

PostgreSQL and Redis come from WATCHWORD_TEST_POSTGRES_URL and WATCHWORD_TEST_REDIS_URL
(defaults: the local services). Unreachable, their tests skip with the reason; under
CI=true they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, TEST_SECRET_KEY, ManualClock, fast_hasher
from watchword.config import Settings
from watchword.services.container import Container
from watchword.stores.sql.database import SqlDatabase
from watchword.web.app import create_app

CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get(
    "WATCHWORD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("WATCHWORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BASE_URL = "http://127.0.0.1:8000"


def service_unavailable(what: str, reason: object) -> None:
    if CI:
        pytest.fail(f"{what} is unreachable under CI=true: {reason}")
    pytest.skip(f"{what} is unreachable: {reason}")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped on exit."""
    import asyncpg

    name = f"watchword_test_{uuid.uuid4().hex[:10]}"
    admin_dsn = _asyncpg_dsn(POSTGRES_URL)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    base, _, _ = admin_dsn.rpartition("/")
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for each test file, shared by its tests: what one test
    writes, the next in the file may see, but never a test of another file. (One per run
    made each file's outcome depend on which files an xdist worker ran before it: an
    account or a signing key another file left behind.)"""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def own_postgres_url() -> Iterator[str]:
    """A PostgreSQL database for one test alone, for a test that reasons about every row of a
    table, whatever the tests before it in its file wrote."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        service_unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the head once per run. Apps on the default test database
    start from a copy of it: running every migration for every app cost more than the
    tests themselves (the migrations have their own tests, on empty databases)."""
    path = tmp_path_factory.mktemp("migrated") / "watchword.db"

    async def migrate() -> None:
        database = SqlDatabase(_sqlite_url(path))
        await database.upgrade()
        await database.close()

    asyncio.run(migrate())
    assert not path.with_name(path.name + "-wal").exists(), "the template must be checkpointed"
    return path


@pytest.fixture
def settings_factory(tmp_path: Any) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": _sqlite_url(tmp_path / "watchword.db"),
            "secret_key": TEST_SECRET_KEY,
            "secret_key_file": str(tmp_path / "watchword.secret"),
            "session_touch_interval": 1,
        }
        values.update(overrides)
        return Settings(**values)

    return make


AppFactory = Callable[..., Awaitable[tuple[Any, Container]]]


@pytest.fixture
async def app_factory(
    settings_factory: Callable[..., Settings],
    clock: ManualClock,
    tmp_path: Path,
    migrated_sqlite: Path,
) -> AsyncIterator[AppFactory]:
    """Builds apps on migrated databases, with the test clock and a cheap hasher."""
    made: list[Container] = []
    default_database = tmp_path / "watchword.db"

    async def make(**overrides: Any) -> tuple[Any, Container]:
        settings = settings_factory(**overrides)
        container = Container(settings, clock=clock, hasher=fast_hasher())
        if settings.database_url == _sqlite_url(default_database):
            if not default_database.exists():
                shutil.copyfile(migrated_sqlite, default_database)
        else:
            await container.db.upgrade()  # type: ignore[attr-defined]
        made.append(container)
        return create_app(settings, container=container), container

    yield make
    for container in made:
        await container.db.close()


class Client(httpx.AsyncClient):
    """An httpx client on the ASGI app, with helpers for the common steps."""

    container: Container

    async def register(self, email: str = "alice@example.com", password: str = PASSWORD) -> Any:
        response = await self.post("/v1/users", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        return response.json()["user"]

    async def login(
        self, email: str = "alice@example.com", password: str = PASSWORD, **extra: Any
    ) -> httpx.Response:
        response = await self.post(
            "/v1/auth/login", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 200, response.text
        self.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return response


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client_factory(app_factory: AppFactory) -> AsyncIterator[ClientFactory]:
    """Clients on a running app (lifespan started); each call makes a new app."""
    stack: list[tuple[Any, Client]] = []

    async def make(**overrides: Any) -> Client:
        app, container = await app_factory(**overrides)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = Client(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        client.container = container
        stack.append((lifespan, client))
        return client

    yield make
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(client_factory: ClientFactory) -> Client:
    return await client_factory()
