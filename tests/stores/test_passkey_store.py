"""The passkey store keeps one contract on memory, SQLite and PostgreSQL: challenges are
used once, for their purpose, before they expire; a sign count only moves forward; a
credential is registered once; a user touches only their own passkeys."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from watchword.domain.audit import AuditEvent
from watchword.domain.passkeys import REGISTER, SIGN_IN, Passkey, PasskeyChallenge
from watchword.domain.users import User
from watchword.stores.accounts import account_stores_for
from watchword.stores.base import Database

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def user() -> User:
    return User(
        id=str(uuid.uuid4()),
        email=f"{uuid.uuid4().hex[:10]}@example.com",
        password_hash="x",
        created_at=NOW,
        updated_at=NOW,
    )


def passkey(owner: User, *, sign_count: int = 1, at: datetime = NOW) -> Passkey:
    return Passkey(
        id=str(uuid.uuid4()),
        user_id=owner.id,
        credential_id=uuid.uuid4().hex,
        public_key=b"\xa5\x01\x02" + uuid.uuid4().bytes,
        sign_count=sign_count,
        name="Laptop",
        transports=("internal", "hybrid"),
        backed_up=False,
        created_at=at,
    )


def challenge(purpose: str, owner: User | None, at: datetime = NOW) -> PasskeyChallenge:
    return PasskeyChallenge(
        challenge_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        purpose=purpose,
        user_id=owner.id if owner else None,
        created_at=at,
        expires_at=at + timedelta(minutes=3),
    )


async def test_a_challenge_is_used_once_for_its_purpose_before_it_expires(db: Database) -> None:
    store = account_stores_for(db).passkeys
    alice = user()
    await db.users.create(alice)
    mine = challenge(REGISTER, alice)
    anyone = challenge(SIGN_IN, None)
    await store.create_challenge(mine)
    await store.create_challenge(anyone)
    assert await store.use_challenge(mine.challenge_hash, SIGN_IN, NOW) is None  # wrong purpose
    used = await store.use_challenge(mine.challenge_hash, REGISTER, NOW)
    assert used is not None and used.user_id == alice.id and used.used_at == NOW
    assert await store.use_challenge(mine.challenge_hash, REGISTER, NOW) is None  # once
    late = NOW + timedelta(minutes=3)
    assert await store.use_challenge(anyone.challenge_hash, SIGN_IN, late) is None  # expired
    assert await store.use_challenge("0" * 64, SIGN_IN, NOW) is None  # unknown

    # A new challenge sweeps the expired ones away.
    await store.create_challenge(challenge(SIGN_IN, None, at=late + timedelta(seconds=1)))
    kept = NOW + timedelta(seconds=1)
    assert await store.use_challenge(anyone.challenge_hash, SIGN_IN, kept) is None


async def test_a_credential_is_registered_once_and_listed_for_its_owner(db: Database) -> None:
    store = account_stores_for(db).passkeys
    alice, bob = user(), user()
    await db.users.create(alice)
    await db.users.create(bob)
    first = passkey(alice)
    second = passkey(alice, at=NOW + timedelta(seconds=1))
    assert await store.add(first, audit=[AuditEvent(type="test.add", at=NOW, user_id=alice.id)])
    assert await store.add(second)
    clash = replace(passkey(bob), credential_id=first.credential_id)
    assert not await store.add(clash)  # one authenticator's credential, one account
    assert [p.id for p in await store.list_for(alice.id)] == [first.id, second.id]
    assert await store.list_for(bob.id) == []
    assert await store.count_for(alice.id) == 2
    assert await store.get_by_credential(first.credential_id) == first
    assert [e.type for e in await db.audit.for_user(alice.id)] == ["test.add"]

    assert await store.rename(bob.id, first.id, "mine now") is None  # not bob's
    renamed = await store.rename(alice.id, first.id, "Phone")
    assert renamed is not None and renamed.name == "Phone"
    assert not await store.remove(bob.id, first.id)
    assert await store.remove(alice.id, first.id)
    assert await store.get_by_credential(first.credential_id) is None
    assert await store.remove_all(alice.id) == 1
    assert await store.count_for(alice.id) == 0


async def test_a_sign_count_only_moves_forward(db: Database) -> None:
    store = account_stores_for(db).passkeys
    alice = user()
    await db.users.create(alice)
    counted = passkey(alice, sign_count=5)
    counterless = passkey(alice, sign_count=0)
    await store.add(counted)
    await store.add(counterless)
    later = NOW + timedelta(minutes=1)
    assert not await store.use(counted.id, 5, later)  # the same count again: a replay or clone
    assert not await store.use(counted.id, 4, later)
    assert await store.use(counted.id, 6, later)
    found = await store.get_by_credential(counted.credential_id)
    assert found is not None and found.sign_count == 6 and found.last_used_at == later
    # An authenticator without a counter (always 0) keeps signing in.
    assert await store.use(counterless.id, 0, later)
    assert await store.use(counterless.id, 0, later)
    assert not await store.use(str(uuid.uuid4()), 9, later)
