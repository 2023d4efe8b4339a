"""``after_commit``: what a step of a write transaction announces is announced once the
transaction has committed, never when it rolled back, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from watchword.stores.sql.engine import after_commit, make_engine, write_transaction


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/after-commit.db"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    # One pooled connection: a later transaction gets the very connection the first used.
    made = make_engine(url, pool_size=1)
    yield made
    await made.dispose()


async def test_callbacks_run_after_commit_and_never_after_a_rollback(engine: AsyncEngine) -> None:
    heard: list[str] = []
    with pytest.raises(RuntimeError):
        async with write_transaction(engine) as conn:
            await conn.execute(text("SELECT 1"))
            after_commit(conn, lambda: heard.append("rolled back"))
            raise RuntimeError("the step failed")
    assert heard == []
    async with write_transaction(engine) as conn:
        after_commit(conn, lambda: heard.append("committed"))
        assert heard == []  # not before the commit
    assert heard == ["committed"]  # once, and the rolled-back one is gone for good
    async with write_transaction(engine) as conn:
        await conn.execute(text("SELECT 1"))
    assert heard == ["committed"]
