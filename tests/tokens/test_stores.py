"""The token store contracts, on memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watchword.domain.keys import StoredKey
from watchword.domain.sessions import Session
from watchword.domain.tokens import RefreshToken
from watchword.domain.users import User
from watchword.stores.memory import MemoryDatabase
from watchword.stores.sql import SqlDatabase
from watchword.stores.tokens import TokenStores, token_stores_for

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: Any, tmp_path: Any) -> Iterator[str | None]:
    """None for memory; on PostgreSQL a database of this test alone, next to the run's:
    the contracts count rows and generations from zero, so each needs an empty schema."""
    if request.param == "memory":
        yield None
    elif request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/stores.db"
    else:
        postgres_url: str = request.getfixturevalue("postgres_url")
        base, _, run_db = postgres_url.rpartition("/")
        name = f"{run_db}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
        yield f"{base}/{name}"
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def backend(database_url: str | None) -> AsyncIterator[tuple[Any, TokenStores]]:
    if database_url is None:
        db: Any = MemoryDatabase()
    else:
        db = SqlDatabase(database_url)
        await db.upgrade()
    user = User(id="u1", email="u@example.com", password_hash="x", created_at=NOW, updated_at=NOW)
    await db.users.create(user)
    session = Session(
        id="s1",
        user_id="u1",
        secret_hash=None,
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        idle_timeout_seconds=600,
        kind="token",
    )
    await db.sessions.create(session, limit=0, policy="evict-oldest", grace_seconds=1, origin="t")
    yield db, token_stores_for(db)
    await db.close()


def key(kid: str, generation: int) -> StoredKey:
    return StoredKey(
        kid=kid,
        algorithm="EdDSA",
        generation=generation,
        private_sealed="sealed",
        public_jwk={"kid": kid},
        created_at=NOW,
    )


async def test_keys_add_is_guarded_by_the_generation(backend: tuple[Any, TokenStores]) -> None:
    db, stores = backend
    assert not await stores.keys.add(key("k0", 2), NOW, origin="t")  # skips a generation
    results = await asyncio.gather(
        *(stores.keys.add(key(f"k{i}", 1), NOW, origin="t") for i in range(5))
    )
    assert results.count(True) == 1
    later = NOW + timedelta(minutes=1)
    assert await stores.keys.add(key("next", 2), later, origin="t")
    stored = await stores.keys.all()
    assert [k.generation for k in stored] == [1, 2]
    assert stored[0].retired_at == later and stored[1].retired_at is None
    kinds = [r.payload["type"] for r in await db.control.read_after(0)]
    assert kinds.count("keys.changed") == 2
    assert await stores.keys.delete_retired_before(later + timedelta(seconds=1)) == 1
    assert [k.kid for k in await stores.keys.all()] == ["next"]


async def test_refresh_rotation_has_one_winner(backend: tuple[Any, TokenStores]) -> None:
    _, stores = backend
    first = RefreshToken(id="r1", session_id="s1", token_hash="h1", created_at=NOW)
    await stores.refresh.create(first)
    with pytest.raises(Exception):  # noqa: B017 - insert-only: the same hash twice
        await stores.refresh.create(
            RefreshToken(id="r9", session_id="s1", token_hash="h1", created_at=NOW)
        )
    successors = [
        RefreshToken(id=f"r2-{i}", session_id="s1", token_hash=f"h2-{i}", created_at=NOW)
        for i in range(6)
    ]
    results = await asyncio.gather(
        *(stores.refresh.rotate("r1", s, f"sealed-{s.id}", NOW) for s in successors)
    )
    assert results.count(True) == 1
    winner = successors[results.index(True)]
    old = await stores.refresh.get_by_hash("h1")
    assert old is not None and old.state == "rotated" and old.rotated_at == NOW
    assert old.successor_sealed == f"sealed-{winner.id}"
    new = await stores.refresh.get_by_hash(winner.token_hash)
    assert new is not None and new.state == "active"
    for loser in successors:
        if loser is not winner:
            assert await stores.refresh.get_by_hash(loser.token_hash) is None
    assert await stores.refresh.forget_successors(NOW + timedelta(seconds=1)) == 1
    old = await stores.refresh.get_by_hash("h1")
    assert old is not None and old.successor_sealed is None and old.state == "rotated"


async def test_revocations(backend: tuple[Any, TokenStores]) -> None:
    db, stores = backend
    later = NOW + timedelta(minutes=10)
    await stores.revocations.revoke_jti("j1", later, NOW, origin="t")
    await stores.revocations.revoke_jti("j1", later, NOW, origin="t")  # idempotent
    await stores.revocations.revoke_jti("j2", NOW + timedelta(seconds=5), NOW, origin="t")
    assert set(await stores.revocations.revoked_jtis(NOW)) == {"j1", "j2"}
    assert set(await stores.revocations.revoked_jtis(NOW + timedelta(seconds=6))) == {"j1"}
    assert await stores.revocations.clear_expired(NOW + timedelta(seconds=6)) == 1
    assert await stores.revocations.control_floor() == 1
    await db.sessions.revoke("s1", "logout", NOW, origin="t")
    revoked = await stores.revocations.sessions_revoked_since(NOW - timedelta(seconds=1))
    assert [(sid, at) for sid, at, _ in revoked] == [("s1", NOW)]
    assert await stores.revocations.sessions_revoked_since(NOW) == []
