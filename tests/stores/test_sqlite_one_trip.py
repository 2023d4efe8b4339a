"""SQLite statements in one trip to the connection's thread: the engine of a file database
answers as aiosqlite's own cursors would (rows, counts, ids, errors), with one hand-over to
the connection's thread a statement."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.stores.test_contract import make_user
from watchword.domain.errors import StoreUnavailable
from watchword.stores.sql import SqlDatabase
from watchword.stores.sql.engine import make_engine, write_transaction
from watchword.stores.sql.sqlite_one_trip import OneTripConnection

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = make_engine(f"sqlite+aiosqlite:///{tmp_path}/one-trip.db", pool_size=2)
    async with made.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield made
    await made.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every hand-over to a connection's thread, by the function it carried."""
    seen: list[Any] = []
    handed_over = OneTripConnection._execute

    async def counting(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(args[1] if args else fn)
        return await handed_over(self, fn, *args, **kwargs)

    monkeypatch.setattr(OneTripConnection, "_execute", counting)
    return seen


async def test_a_file_database_is_opened_with_one_trip_connections(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, OneTripConnection)


async def test_a_statement_with_rows_is_one_trip(engine: AsyncEngine, trips: list[Any]) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # BEGIN: the connection's first statement
        trips.clear()
        rows = (await conn.execute(text("SELECT 1 UNION ALL SELECT 2"))).all()
        assert [r[0] for r in rows] == [1, 2]
        assert len(trips) == 1


async def test_rows_counts_and_ids_are_what_sqlite_reports(engine: AsyncEngine) -> None:
    async with write_transaction(engine) as conn:
        first = await conn.execute(insert(things).values(name="a"))
        assert first.inserted_primary_key == (1,)  # the cursor's lastrowid
        many = await conn.execute(insert(things), [{"name": "b"}, {"name": "c"}])
        assert many.rowcount == 2
        changed = await conn.execute(
            update(things).where(things.c.name != "a").values(name=things.c.name + "!")
        )
        assert changed.rowcount == 2
        returned = await conn.execute(
            update(things)
            .where(things.c.name == "a")
            .values(name="a!")
            .returning(things.c.id, things.c.name)
        )
        assert returned.all() == [(1, "a!")]
    async with engine.connect() as conn:
        names = (await conn.execute(select(things.c.name).order_by(things.c.id))).scalars()
        assert list(names) == ["a!", "b!", "c!"]


async def test_a_refused_statement_raises_and_rolls_back_cleanly(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with write_transaction(engine) as conn:
            await conn.execute(insert(things).values(name="same"))
            await conn.execute(insert(things).values(name="same"))
    async with write_transaction(engine) as conn:  # the connection goes on being usable
        await conn.execute(insert(things).values(name="other"))
    async with engine.connect() as conn:
        names = (await conn.execute(select(things.c.name))).scalars()
        assert list(names) == ["other"]  # the refused transaction left nothing


async def test_a_locked_database_is_unavailable_and_the_write_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the store says
    ``StoreUnavailable`` (the server's 503), and nothing of the write is there afterwards."""
    path = tmp_path / "locked.db"
    database = SqlDatabase(f"sqlite+aiosqlite:///{path}", pool_size=2, timeout=0.2)
    await database.upgrade()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another writer would hold it
        user = make_user("locked-out@example.com")
        with pytest.raises(StoreUnavailable):
            await database.users.create(user)
        other.execute("ROLLBACK")
        assert await database.users.get_by_email("locked-out@example.com") is None
        await database.users.create(user)  # and the same write goes through once it is free
        assert await database.users.get(user.id) == user
    finally:
        other.close()
        await database.close()
