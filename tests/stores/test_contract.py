"""The store contracts (stores/base.py), one suite run on every backend.

Each test gets an empty database from the ``db`` fixture: MemoryDatabase, SqlDatabase on a
SQLite file, and SqlDatabase on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from watchword.domain import events
from watchword.domain.audit import AuditEvent, AuditType
from watchword.domain.clock import SystemRandomness, sha256_hex
from watchword.domain.errors import Conflict, EmailTaken, SessionLimitReached
from watchword.domain.sessions import RevokeReason, Session, new_session_secret
from watchword.domain.users import User
from watchword.stores.base import Database
from watchword.stores.memory import MemoryDatabase
from watchword.stores.sql import SqlDatabase
from watchword.stores.sql import tables as t

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ORIGIN = "node-test"
IDLE = 1800
LIFETIME = timedelta(hours=12)


def make_user(email: str = "alice@example.com", **changes: Any) -> User:
    user = User(
        id=str(uuid.uuid4()),
        email=email,
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        created_at=NOW,
        updated_at=NOW,
        first_name="Alice",
        roles=("admin",),
    )
    return dataclasses.replace(user, **changes)


def make_session(user: User, *, at: datetime = NOW, **changes: Any) -> tuple[Session, str]:
    secret, secret_hash = new_session_secret(SystemRandomness())
    session = Session(
        id=str(uuid.uuid4()),
        user_id=user.id,
        secret_hash=secret_hash,
        created_at=at,
        last_seen_at=at,
        expires_at=at + LIFETIME,
        idle_timeout_seconds=IDLE,
        device_name="laptop",
        user_agent="Mozilla/5.0",
        ip="192.0.2.1",
    )
    return dataclasses.replace(session, **changes), secret


async def add_session(
    db: Database, user: User, *, at: datetime = NOW, limit: int = 0, policy: str = "reject"
) -> tuple[Session, str]:
    session, secret = make_session(user, at=at)
    await db.sessions.create(session, limit=limit, policy=policy, grace_seconds=60, origin=ORIGIN)
    return session, secret


async def raw_rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every stored row of the foundation tables, as the backend holds it."""
    if isinstance(db, MemoryDatabase):
        return {
            "users": [dataclasses.asdict(u) for u in db.user_rows.values()],
            "sessions": [dataclasses.asdict(s) for s in db.session_rows.values()],
            "audit_events": [dataclasses.asdict(e) for e in await db.audit.tail(limit=10_000)],
            "control_log": [
                dataclasses.asdict(r) for r in await db.control.read_after(0, limit=10_000)
            ],
        }
    assert isinstance(db, SqlDatabase)
    rows: dict[str, list[dict[str, Any]]] = {}
    async with db.engine.connect() as conn:
        for table in (t.users, t.sessions, t.audit_events, t.control_log):
            rows[table.name] = [dict(r._mapping) for r in await conn.execute(select(table))]
    return rows


def flatten(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in flatten(v)]
    return [str(value)]


# -- users ----------------------------------------------------------------------------------


async def test_user_round_trip(db: Database) -> None:
    user = make_user(roles=("admin", "ops"), last_name="Liddell")
    assert await db.users.create(user) == user
    assert await db.users.get(user.id) == user
    assert await db.users.get_by_email("alice@example.com") == user
    assert await db.users.count() == 1
    loaded = await db.users.get(user.id)
    assert loaded is not None and loaded.created_at.tzinfo is not None


async def test_loading_an_unknown_user_creates_nothing(db: Database) -> None:
    assert await db.users.get(str(uuid.uuid4())) is None
    assert await db.users.get_by_email("nobody@example.com") is None
    assert await db.users.count() == 0


async def test_create_is_insert_only_duplicate_email_raises_and_writes_nothing(
    db: Database,
) -> None:
    first = make_user()
    await db.users.create(first)
    clash = make_user(first_name="Mallory")
    with pytest.raises(EmailTaken):
        await db.users.create(clash)
    assert await db.users.get(clash.id) is None
    assert await db.users.count() == 1
    kept = await db.users.get_by_email("alice@example.com")
    assert kept is not None and kept.id == first.id and kept.first_name == "Alice"


async def test_create_with_a_taken_id_does_not_overwrite(db: Database) -> None:
    first = make_user()
    await db.users.create(first)
    with pytest.raises(Conflict):
        await db.users.create(make_user(email="other@example.com", id=first.id))
    assert await db.users.get(first.id) == first


async def test_page_is_oldest_first_and_bounded(db: Database) -> None:
    created = []
    for i in range(5):
        user = make_user(email=f"u{i}@example.com", created_at=NOW + timedelta(seconds=i))
        await db.users.create(user)
        created.append(user.id)
    assert [u.id for u in await db.users.page(limit=2)] == created[:2]
    assert [u.id for u in await db.users.page(limit=10, offset=3)] == created[3:]


async def test_update_bumps_updated_at_and_records_a_user_change(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    later = NOW + timedelta(minutes=5)
    updated = await db.users.update(user.id, {"roles": ("ops",)}, later, origin=ORIGIN)
    assert updated is not None and updated.roles == ("ops",) and updated.updated_at == later
    feed = await db.control.read_after(0)
    assert [r.payload for r in feed] == [events.user_changed(user.id, disabled=False)]
    assert feed[0].origin == ORIGIN
    assert await db.users.update(str(uuid.uuid4()), {"roles": ()}, later, origin=ORIGIN) is None


async def test_update_to_a_taken_email_raises_and_changes_nothing(db: Database) -> None:
    alice, bob = make_user(), make_user(email="bob@example.com")
    await db.users.create(alice)
    await db.users.create(bob)
    with pytest.raises(EmailTaken):
        await db.users.update(bob.id, {"email": alice.email}, NOW, origin=ORIGIN)
    assert await db.users.get(bob.id) == bob
    assert await db.control.read_after(0) == []


async def test_disabling_revokes_every_live_session_in_the_same_step(db: Database) -> None:
    user, other = make_user(), make_user(email="bob@example.com")
    await db.users.create(user)
    await db.users.create(other)
    mine = [(await add_session(db, user))[0] for _ in range(3)]
    theirs, _ = await add_session(db, other)
    later = NOW + timedelta(minutes=1)
    disabled, revoked = await db.users.set_disabled(user.id, True, later, origin=ORIGIN)
    assert disabled is not None and disabled.disabled
    assert {s.id for s in revoked} == {s.id for s in mine}
    assert all(s.revoked_reason == RevokeReason.USER_DISABLED for s in revoked)
    assert await db.sessions.list_live(user.id, later) == []
    assert [s.id for s in await db.sessions.list_live(other.id, later)] == [theirs.id]
    payloads = [r.payload for r in await db.control.read_after(0)]
    revoked_ids = {p["session_id"] for p in payloads if p["type"] == events.SESSION_REVOKED}
    assert revoked_ids == {s.id for s in mine}
    assert events.user_changed(user.id, disabled=True) in payloads
    enabled, none = await db.users.set_disabled(user.id, False, later, origin=ORIGIN)
    assert enabled is not None and not enabled.disabled and none == []
    # Enabling never resurrects what disabling revoked.
    assert await db.sessions.list_live(user.id, later) == []
    assert await db.users.set_disabled(str(uuid.uuid4()), True, later, origin=ORIGIN) == (None, [])


async def test_delete_user_removes_its_sessions_and_reports_the_live_ones(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    live, _ = await add_session(db, user)
    gone, _ = await add_session(db, user)
    await db.sessions.revoke(gone.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN)
    revoked = await db.users.delete(user.id, NOW, origin=ORIGIN)
    assert [s.id for s in revoked] == [live.id]
    assert await db.users.get(user.id) is None
    assert await db.sessions.get(live.id) is None and await db.sessions.get(gone.id) is None


# -- sessions -------------------------------------------------------------------------------


async def test_session_round_trip_by_id_and_by_secret_hash(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    session, secret = await add_session(db, user)
    assert await db.sessions.get(session.id) == session
    assert await db.sessions.get_by_secret_hash(sha256_hex(secret)) == session
    assert await db.sessions.list_live(user.id, NOW) == [session]


async def test_loading_an_unknown_session_creates_nothing(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    assert await db.sessions.get(str(uuid.uuid4())) is None
    assert await db.sessions.get_by_secret_hash(sha256_hex("forged")) is None
    assert await db.sessions.list_live(user.id, NOW) == []
    assert (await raw_rows(db))["sessions"] == []


async def test_session_create_is_insert_only(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    session, _ = await add_session(db, user)
    clash, _ = make_session(user, id=session.id, device_name="attacker")
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing changes
        await db.sessions.create(clash, limit=0, policy="reject", grace_seconds=0, origin=ORIGIN)
    assert await db.sessions.get(session.id) == session


async def test_list_live_is_newest_first_and_leaves_out_revoked_and_expired(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    old, _ = await add_session(db, user, at=NOW - LIFETIME - timedelta(seconds=1))
    first, _ = await add_session(db, user, at=NOW - timedelta(minutes=2))
    second, _ = await add_session(db, user, at=NOW - timedelta(minutes=1))
    revoked, _ = await add_session(db, user, at=NOW)
    await db.sessions.revoke(revoked.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN)
    assert [s.id for s in await db.sessions.list_live(user.id, NOW)] == [second.id, first.id]
    assert old.id not in {s.id for s in await db.sessions.list_live(user.id, NOW)}


async def test_revoke_marks_once_and_never_resurrects(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    session, secret = await add_session(db, user)
    later = NOW + timedelta(minutes=3)
    revoked = await db.sessions.revoke(session.id, RevokeReason.LOGOUT, later, origin=ORIGIN)
    assert revoked is not None and revoked.revoked_at == later
    assert revoked.revoked_reason == RevokeReason.LOGOUT
    # A second revocation is refused and does not move the revocation time or reason.
    again = await db.sessions.revoke(
        session.id, RevokeReason.ADMIN, later + LIFETIME, origin=ORIGIN
    )
    assert again is None
    # Touching a revoked session changes nothing, and nothing brings it back.
    await db.sessions.touch({session.id: later + timedelta(minutes=1)})
    stored = await db.sessions.get_by_secret_hash(sha256_hex(secret))
    assert stored is not None
    assert stored.revoked_at == later and stored.revoked_reason == RevokeReason.LOGOUT
    assert stored.last_seen_at == NOW
    assert await db.sessions.list_live(user.id, later) == []
    assert await db.sessions.revoke(str(uuid.uuid4()), "revoked", later, origin=ORIGIN) is None


async def test_revoke_for_an_owner_leaves_another_users_session_alone(db: Database) -> None:
    alice, mallory = make_user(), make_user("mallory@example.com")
    await db.users.create(alice)
    await db.users.create(mallory)
    session, _ = await add_session(db, alice)
    feed_before = await db.control.last_id()
    refused = await db.sessions.revoke(
        session.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN, owner_id=mallory.id
    )
    assert refused is None
    assert await db.sessions.get(session.id) == session  # unchanged, and nothing announced
    assert await db.control.last_id() == feed_before
    revoked = await db.sessions.revoke(
        session.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN, owner_id=alice.id
    )
    assert revoked is not None and revoked.revoked_at == NOW


async def test_touch_never_moves_last_seen_back(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    a, _ = await add_session(db, user)
    b, _ = await add_session(db, user)
    forward = NOW + timedelta(minutes=10)
    await db.sessions.touch({a.id: forward, b.id: forward, str(uuid.uuid4()): forward})
    await db.sessions.touch({a.id: NOW + timedelta(minutes=1)})
    await db.sessions.touch({})
    stored_a, stored_b = await db.sessions.get(a.id), await db.sessions.get(b.id)
    assert stored_a is not None and stored_a.last_seen_at == forward
    assert stored_b is not None and stored_b.last_seen_at == forward
    assert await db.sessions.get(str(uuid.uuid4())) is None


async def test_revoke_all_except_one(db: Database) -> None:
    user, other = make_user(), make_user(email="bob@example.com")
    await db.users.create(user)
    await db.users.create(other)
    keep, _ = await add_session(db, user)
    doomed = [(await add_session(db, user))[0] for _ in range(3)]
    theirs, _ = await add_session(db, other)
    revoked = await db.sessions.revoke_all(
        user.id, RevokeReason.REVOKED_OTHERS, NOW, origin=ORIGIN, except_session_id=keep.id
    )
    assert {s.id for s in revoked} == {s.id for s in doomed}
    assert [s.id for s in await db.sessions.list_live(user.id, NOW)] == [keep.id]
    assert [s.id for s in await db.sessions.list_live(other.id, NOW)] == [theirs.id]
    # Nothing left to revoke: an empty answer and nothing more in the feed.
    before = await db.control.last_id()
    assert (
        await db.sessions.revoke_all(
            user.id, RevokeReason.REVOKED_OTHERS, NOW, origin=ORIGIN, except_session_id=keep.id
        )
        == []
    )
    assert await db.control.last_id() == before
    everything = await db.sessions.revoke_all(user.id, RevokeReason.ADMIN, NOW, origin=ORIGIN)
    assert [s.id for s in everything] == [keep.id]


async def test_control_feed_records_each_revocation_with_the_write(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    one, _ = await add_session(db, user)
    two, _ = await add_session(db, user)
    three, _ = await add_session(db, user)
    assert await db.control.last_id() == 0
    await db.sessions.revoke(one.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN)
    await db.sessions.revoke_all(
        user.id, RevokeReason.REVOKED_OTHERS, NOW, origin=ORIGIN, except_session_id=three.id
    )
    feed = await db.control.read_after(0)
    assert [r.payload for r in feed] == [
        events.session_revoked(one.id, user.id, "logout", one.expires_at.timestamp()),
        events.session_revoked(two.id, user.id, "revoked_by_user", two.expires_at.timestamp()),
    ]
    assert [r.id for r in feed] == sorted(r.id for r in feed)
    assert await db.control.last_id() == feed[-1].id
    assert await db.control.read_after(feed[0].id) == feed[1:]
    assert await db.control.read_after(0, limit=1) == feed[:1]


async def test_control_feed_append_and_clear(db: Database) -> None:
    ids = await db.control.append(
        [{"type": events.CACHE_FLUSH}, {"type": events.KEYS_CHANGED}], NOW, origin=ORIGIN
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    await db.control.append([{"type": events.CACHE_FLUSH}], NOW + timedelta(hours=2), origin="x")
    assert await db.control.clear_older_than(NOW + timedelta(hours=1)) == 2
    remaining = await db.control.read_after(0)
    assert [(r.origin, r.payload) for r in remaining] == [("x", {"type": events.CACHE_FLUSH})]
    # Ids are never reused after a clear.
    assert await db.control.last_id() == remaining[0].id


async def test_clear_expired(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    keep = 3600
    now = NOW + LIFETIME + timedelta(hours=3)
    long_expired, _ = await add_session(db, user, at=NOW)  # expired 3h before `now`
    recently_expired, _ = await add_session(db, user, at=now - LIFETIME - timedelta(minutes=1))
    live, _ = await add_session(db, user, at=now - timedelta(minutes=1))
    revoked_long_ago, _ = await add_session(db, user, at=now - timedelta(hours=2))
    await db.sessions.revoke(revoked_long_ago.id, "logout", now - timedelta(hours=2), origin=ORIGIN)
    revoked_recently, _ = await add_session(db, user, at=now - timedelta(minutes=5))
    await db.sessions.revoke(
        revoked_recently.id, "logout", now - timedelta(minutes=5), origin=ORIGIN
    )
    assert await db.sessions.clear_expired(now, keep_revoked_for=keep) == 2
    assert await db.sessions.get(long_expired.id) is None
    assert await db.sessions.get(revoked_long_ago.id) is None
    for kept in (recently_expired, live, revoked_recently):
        assert await db.sessions.get(kept.id) is not None
    assert await db.sessions.clear_expired(now, keep_revoked_for=keep) == 0


# -- the session limit ----------------------------------------------------------------------


async def test_session_limit_reject_refuses_and_writes_nothing(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    for _ in range(2):
        await add_session(db, user, limit=2, policy="reject")
    refused, _ = make_session(user)
    with pytest.raises(SessionLimitReached):
        await db.sessions.create(refused, limit=2, policy="reject", grace_seconds=60, origin=ORIGIN)
    assert await db.sessions.get(refused.id) is None
    assert len(await db.sessions.list_live(user.id, NOW)) == 2
    assert await db.control.last_id() == 0


async def test_session_limit_evicts_the_oldest(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    oldest, _ = await add_session(db, user, at=NOW - timedelta(minutes=3))
    middle, _ = await add_session(db, user, at=NOW - timedelta(minutes=2))
    newest, _ = make_session(user)
    evicted = await db.sessions.create(
        newest, limit=2, policy="evict-oldest", grace_seconds=60, origin=ORIGIN
    )
    assert [s.id for s in evicted] == [oldest.id]
    assert evicted[0].revoked_reason == RevokeReason.EVICTED
    assert [s.id for s in await db.sessions.list_live(user.id, NOW)] == [newest.id, middle.id]
    feed = await db.control.read_after(0)
    assert [r.payload["session_id"] for r in feed] == [oldest.id]


async def test_session_limit_ignores_idle_expired_sessions(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    stale, _ = await add_session(db, user, at=NOW - timedelta(seconds=IDLE + 120))
    fresh, _ = make_session(user)
    evicted = await db.sessions.create(
        fresh, limit=1, policy="reject", grace_seconds=60, origin=ORIGIN
    )
    assert evicted == []
    assert await db.sessions.get(stale.id) is not None


@pytest.mark.parametrize("policy", ["evict-oldest", "reject"])
async def test_the_session_limit_holds_under_concurrent_creates(db: Database, policy: str) -> None:
    user = make_user()
    await db.users.create(user)
    attempts = [make_session(user, at=NOW + timedelta(milliseconds=i))[0] for i in range(20)]

    async def create(session: Session) -> list[Session] | SessionLimitReached:
        try:
            return await db.sessions.create(
                session, limit=3, policy=policy, grace_seconds=60, origin=ORIGIN
            )
        except SessionLimitReached as exc:
            return exc

    results = await asyncio.gather(*(create(s) for s in attempts))
    live = await db.sessions.list_live(user.id, NOW + timedelta(seconds=1))
    assert len(live) == 3
    feed = await db.control.read_after(0, limit=100)
    if policy == "reject":
        assert sum(isinstance(r, SessionLimitReached) for r in results) == 17
        assert feed == []
        created = {s.id for s, r in zip(attempts, results, strict=True) if isinstance(r, list)}
        assert {s.id for s in live} == created
    else:
        evicted = [s for r in results if isinstance(r, list) for s in r]
        assert len(evicted) == 17 and len({s.id for s in evicted}) == 17
        assert sorted(r.payload["session_id"] for r in feed) == sorted(s.id for s in evicted)


# -- audit ----------------------------------------------------------------------------------


def audit_event(n: int, user_id: str | None) -> AuditEvent:
    return AuditEvent(
        type=AuditType.LOGIN_SUCCEEDED,
        at=NOW + timedelta(seconds=n),
        user_id=user_id,
        session_id=f"s{n}",
        ip="192.0.2.9",
        user_agent="curl/8",
        actor_id=None,
        details={"n": n, "nested": {"ok": True}},
    )


async def test_audit_append_for_user_and_tail(db: Database) -> None:
    for n in range(6):
        await db.audit.append(audit_event(n, "u1" if n % 2 == 0 else "u2"))
    mine = await db.audit.for_user("u1")
    assert [e.details["n"] for e in mine] == [4, 2, 0]
    assert mine[0].ip == "192.0.2.9" and mine[0].user_agent == "curl/8"
    assert mine[0].details == {"n": 4, "nested": {"ok": True}}
    assert mine[0].at == NOW + timedelta(seconds=4)
    assert mine[0].id is not None
    assert [e.details["n"] for e in await db.audit.for_user("u1", limit=1)] == [4]
    assert [e.details["n"] for e in await db.audit.for_user("u1", before_id=mine[1].id)] == [0]
    assert await db.audit.for_user("nobody") == []
    tail = await db.audit.tail(limit=3)
    assert [e.details["n"] for e in tail] == [3, 4, 5]
    after = await db.audit.tail(after_id=tail[0].id, limit=10)
    assert [e.details["n"] for e in after] == [4, 5]


# -- secrets at rest ------------------------------------------------------------------------


async def test_stored_rows_contain_no_usable_secret(db: Database) -> None:
    password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
    user = make_user(password_hash=password_hash)
    await db.users.create(user)
    session, secret = await add_session(db, user)
    await db.sessions.revoke(session.id, RevokeReason.LOGOUT, NOW, origin=ORIGIN)
    await db.audit.append(audit_event(1, user.id))
    rows = await raw_rows(db)
    values = [v for table in rows.values() for v in flatten(table)]
    assert all(secret not in v for v in values)
    assert [r["secret_hash"] for r in rows["sessions"]] == [sha256_hex(secret)]
    assert [r["password_hash"] for r in rows["users"]] == [password_hash]


# -- audit rows written with the change they describe ---------------------------------------


async def test_user_create_writes_its_audit_rows_with_it_or_not_at_all(db: Database) -> None:
    user = make_user()
    await db.users.create(user, audit=[audit_event(1, user.id)])
    assert [e.session_id for e in await db.audit.for_user(user.id)] == ["s1"]
    clash = make_user(first_name="Mallory")
    with pytest.raises(EmailTaken):
        await db.users.create(clash, audit=[audit_event(2, clash.id)])
    assert await db.audit.for_user(clash.id) == []


async def test_session_create_writes_its_audit_rows_with_it_or_not_at_all(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    session, _ = make_session(user)
    signed_in = dataclasses.replace(audit_event(1, user.id), session_id=session.id)
    await db.sessions.create(
        session, limit=1, policy="reject", grace_seconds=60, origin=ORIGIN, audit=[signed_in]
    )
    assert [e.session_id for e in await db.audit.for_user(user.id)] == [session.id]
    refused, _ = make_session(user)
    with pytest.raises(SessionLimitReached):
        await db.sessions.create(
            refused,
            limit=1,
            policy="reject",
            grace_seconds=60,
            origin=ORIGIN,
            audit=[dataclasses.replace(signed_in, session_id=refused.id)],
        )
    assert [e.session_id for e in await db.audit.for_user(user.id)] == [session.id]


async def test_a_failing_audit_row_leaves_no_session_behind(db: Database) -> None:
    if isinstance(db, MemoryDatabase):
        pytest.skip("an in-memory audit append cannot fail")
    user = make_user()
    await db.users.create(user)
    session, _ = make_session(user)
    unwritable = dataclasses.replace(audit_event(1, user.id), details={"x": object()})
    with pytest.raises(Exception):  # noqa: B017 - the driver's refusal, whatever its class
        await db.sessions.create(
            session, limit=0, policy="reject", grace_seconds=60, origin=ORIGIN, audit=[unwritable]
        )
    assert await db.sessions.get(session.id) is None
    assert await db.audit.for_user(user.id) == []


async def test_change_password_revokes_all_but_one_with_the_audit_row(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    keep, _ = await add_session(db, user)
    other, _ = await add_session(db, user)
    later = NOW + timedelta(minutes=1)

    def audit(revoked: list[Session]) -> list[AuditEvent]:
        return [
            dataclasses.replace(
                audit_event(1, user.id),
                type=AuditType.PASSWORD_CHANGED,
                details={"sessions": [s.id for s in revoked]},
            )
        ]

    changed, revoked = await db.users.change_password(
        user.id, "$argon2id$new", later, origin=ORIGIN, keep_session_id=keep.id, audit=audit
    )
    assert changed is not None and changed.password_hash == "$argon2id$new"
    assert changed.updated_at == later
    assert [s.id for s in revoked] == [other.id]
    assert revoked[0].revoked_reason == RevokeReason.PASSWORD_CHANGED
    assert [s.id for s in await db.sessions.list_live(user.id, later)] == [keep.id]
    assert [r.payload["session_id"] for r in await db.control.read_after(0)] == [other.id]
    events = await db.audit.for_user(user.id)
    assert [(e.type, e.details) for e in events] == [
        (AuditType.PASSWORD_CHANGED, {"sessions": [other.id]})
    ]
    missing = await db.users.change_password(
        str(uuid.uuid4()), "$argon2id$x", later, origin=ORIGIN, keep_session_id=None, audit=audit
    )
    assert missing == (None, [])
    assert len(await db.audit.tail(limit=10)) == 1


async def test_a_failing_password_change_changes_nothing(db: Database) -> None:
    if isinstance(db, MemoryDatabase):
        pytest.skip("an in-memory audit append cannot fail")
    user = make_user()
    await db.users.create(user)
    keep, _ = await add_session(db, user)
    other, _ = await add_session(db, user)

    def unwritable(revoked: list[Session]) -> list[AuditEvent]:
        return [dataclasses.replace(audit_event(1, user.id), details={"x": object()})]

    with pytest.raises(Exception):  # noqa: B017 - the driver's refusal, whatever its class
        await db.users.change_password(
            user.id, "$argon2id$new", NOW, origin=ORIGIN, keep_session_id=keep.id, audit=unwritable
        )
    assert await db.users.get(user.id) == user
    assert len(await db.sessions.list_live(user.id, NOW)) == 2
    assert await db.control.last_id() == 0
    assert other.id in {s.id for s in await db.sessions.list_live(user.id, NOW)}


async def test_set_disabled_applies_changes_and_audit_rows_in_the_same_step(db: Database) -> None:
    user = make_user()
    await db.users.create(user)
    session, _ = await add_session(db, user)

    def audit(revoked: list[Session]) -> list[AuditEvent]:
        return [
            dataclasses.replace(
                audit_event(1, user.id), details={"revoked": [s.id for s in revoked]}
            )
        ]

    disabled, revoked = await db.users.set_disabled(
        user.id, True, NOW, origin=ORIGIN, changes={"roles": ("ops",)}, audit=audit
    )
    assert disabled is not None and disabled.roles == ("ops",) and disabled.disabled
    assert [s.id for s in revoked] == [session.id]
    assert [e.details for e in await db.audit.for_user(user.id)] == [{"revoked": [session.id]}]
    assert await db.users.get(user.id) == disabled


async def test_a_failing_disable_changes_nothing(db: Database) -> None:
    if isinstance(db, MemoryDatabase):
        pytest.skip("an in-memory audit append cannot fail")
    user = make_user()
    await db.users.create(user)
    session, _ = await add_session(db, user)

    def unwritable(revoked: list[Session]) -> list[AuditEvent]:
        return [dataclasses.replace(audit_event(1, user.id), details={"x": object()})]

    with pytest.raises(Exception):  # noqa: B017 - the driver's refusal, whatever its class
        await db.users.set_disabled(
            user.id, True, NOW, origin=ORIGIN, changes={"roles": ()}, audit=unwritable
        )
    assert await db.users.get(user.id) == user
    assert [s.id for s in await db.sessions.list_live(user.id, NOW)] == [session.id]
    assert await db.control.last_id() == 0
