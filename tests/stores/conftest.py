"""One backend fixture for the store contract suite: memory, SQLite file, real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from watchword.stores.base import Database
from watchword.stores.memory import MemoryDatabase
from watchword.stores.sql import SqlDatabase

FOUNDATION_TABLES = ("control_log", "audit_events", "sessions", "users")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Any) -> str | None:
    """None for the in-memory store, else a database URL (PostgreSQL may skip)."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/stores.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(backend_url: str | None) -> AsyncIterator[Database]:
    if backend_url is None:
        yield MemoryDatabase()
        return
    database = SqlDatabase(backend_url, pool_size=10)
    await database.upgrade()
    if database.dialect == "postgresql":
        # One PostgreSQL database serves the whole file: start every test from empty tables.
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(FOUNDATION_TABLES)} CASCADE"))
    try:
        yield database
    finally:
        await database.close()
