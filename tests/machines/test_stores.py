"""The machine-credential store contract on memory, SQLite and the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watchword.domain import apikeys as ak
from watchword.domain.clients import OAuthClient, OpaqueToken, TokenFormat
from watchword.domain.clock import SystemRandomness, sha256_hex
from watchword.domain.errors import Conflict, NotFound
from watchword.domain.signatures import SignatureAlgorithm, SigningKey
from watchword.domain.users import User
from watchword.stores.base import Database
from watchword.stores.machines import MachineStores, machine_stores_for
from watchword.stores.memory import MemoryDatabase
from watchword.stores.sql import SqlDatabase

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RANDOM = SystemRandomness()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Any) -> str | None:
    """None for memory, else a database URL (the PostgreSQL fixture is synchronous)."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/m.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def backend(backend_url: str | None) -> AsyncIterator[tuple[Database, MachineStores]]:
    if backend_url is None:
        memory = MemoryDatabase()
        yield memory, machine_stores_for(memory)
        return
    db = SqlDatabase(backend_url)
    await db.upgrade()
    try:
        yield db, machine_stores_for(db)
    finally:
        await db.close()


async def new_user(db: Database) -> User:
    user = User(
        id=str(uuid.uuid4()),
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        password_hash="x",
        created_at=NOW,
        updated_at=NOW,
    )
    await db.users.create(user)
    return user


def api_key(user: User, **kw: Any) -> ak.ApiKey:
    _, public_id, key_hash = ak.new_api_key(RANDOM)
    return ak.ApiKey(
        id=str(uuid.uuid4()),
        public_id=public_id,
        user_id=user.id,
        name="k",
        secret_hash=key_hash,
        scopes=frozenset({"profile"}),
        created_at=NOW,
        **kw,
    )


async def test_api_keys(backend: tuple[Database, MachineStores]) -> None:
    db, stores = backend
    user = await new_user(db)
    first, second = api_key(user), api_key(user, expires_at=NOW + timedelta(days=1))
    await stores.api_keys.create(first)
    await stores.api_keys.create(second)
    with pytest.raises(Conflict):
        await stores.api_keys.create(first)
    assert await stores.api_keys.get_by_public_id(first.public_id) == first
    assert await stores.api_keys.get(second.id) == second
    assert await stores.api_keys.get_by_public_id("0" * 16) is None
    assert {k.id for k in await stores.api_keys.list_for_user(user.id)} == {first.id, second.id}

    await stores.api_keys.touch({first.id: NOW + timedelta(minutes=5)})
    await stores.api_keys.touch({first.id: NOW + timedelta(minutes=1)})  # never backwards
    touched = await stores.api_keys.get(first.id)
    assert touched is not None and touched.last_used_at == NOW + timedelta(minutes=5)

    before = await db.control.last_id()
    other = await new_user(db)
    assert await stores.api_keys.revoke(first.id, NOW, origin="t", user_id=other.id) is None
    revoked = await stores.api_keys.revoke(first.id, NOW, origin="t", user_id=user.id)
    assert revoked is not None and revoked.revoked_at == NOW
    assert await stores.api_keys.revoke(first.id, NOW, origin="t") is None  # once only
    records = await db.control.read_after(before)
    assert [r.payload for r in records] == [
        ak.credential_revoked("api_key", first.public_id, user.id, key_id=first.id)
    ]
    assert [k.id for k in await stores.api_keys.list_for_user(user.id)] == [second.id]


async def test_signing_keys(backend: tuple[Database, MachineStores]) -> None:
    db, stores = backend
    user = await new_user(db)
    key = SigningKey(
        id="wsk_" + uuid.uuid4().hex[:24],
        user_id=user.id,
        name="s",
        algorithm=SignatureAlgorithm.HMAC_SHA256,
        material="sealed",
        scopes=frozenset({"profile", "sessions"}),
        created_at=NOW,
    )
    await stores.signing_keys.create(key)
    with pytest.raises(Conflict):
        await stores.signing_keys.create(key)
    assert await stores.signing_keys.get(key.id) == key
    await stores.signing_keys.touch({key.id: NOW + timedelta(seconds=90)})
    assert (await stores.signing_keys.get(key.id)).last_used_at == NOW + timedelta(seconds=90)  # type: ignore[union-attr]
    assert (await stores.signing_keys.revoke(key.id, NOW, origin="t")) is not None
    assert await stores.signing_keys.list_for_user(user.id) == []


async def test_clients_and_opaque_tokens(backend: tuple[Database, MachineStores]) -> None:
    _, stores = backend
    client = OAuthClient(
        id="wwc_" + uuid.uuid4().hex[:24],
        name="c",
        secret_hash=sha256_hex("s"),
        scopes=frozenset({"a", "b"}),
        token_format=TokenFormat.OPAQUE,
        created_at=NOW,
    )
    await stores.clients.create(client)
    with pytest.raises(Conflict):
        await stores.clients.create(client)
    assert await stores.clients.get(client.id) == client
    assert client.id in {c.id for c in await stores.clients.page(limit=1000)}
    token = OpaqueToken(
        id=str(uuid.uuid4()),
        token_hash=sha256_hex(uuid.uuid4().hex),
        client_id=client.id,
        scopes=frozenset({"a"}),
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )
    await stores.opaque_tokens.create(token)
    with pytest.raises(NotFound):
        await stores.opaque_tokens.create(
            OpaqueToken(
                id=str(uuid.uuid4()),
                token_hash=sha256_hex("orphan"),
                client_id="wwc_missing",
                scopes=frozenset(),
                created_at=NOW,
                expires_at=NOW,
            )
        )
    assert await stores.opaque_tokens.get_by_hash(token.token_hash) == token
    disabled = await stores.clients.set_disabled(client.id, True, NOW, origin="t")
    assert disabled is not None and disabled.disabled
    revoked = await stores.opaque_tokens.get_by_hash(token.token_hash)
    assert revoked is not None and revoked.revoked_at == NOW  # disabling revokes its tokens
    assert await stores.opaque_tokens.revoke(token.id, NOW, origin="t") is None
    assert await stores.opaque_tokens.clear_expired(NOW + timedelta(hours=1)) >= 1
    assert await stores.opaque_tokens.get_by_hash(token.token_hash) is None
    assert await stores.clients.set_disabled("wwc_missing", True, NOW, origin="t") is None


async def test_api_keys_go_with_their_user(backend: tuple[Database, MachineStores]) -> None:
    db, stores = backend
    if isinstance(db, MemoryDatabase):
        pytest.skip("the memory store has no foreign keys")
    user = await new_user(db)
    key = api_key(user)
    await stores.api_keys.create(key)
    await db.users.delete(user.id, NOW, origin="t")
    assert await stores.api_keys.get(key.id) is None
    with pytest.raises(Conflict):
        await stores.api_keys.create(api_key(user))  # no owner any more
