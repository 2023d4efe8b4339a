"""The account-lifecycle stores keep one contract on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from watchword.domain.account_tokens import AccountToken, TokenPurpose
from watchword.domain.audit import AuditEvent
from watchword.domain.errors import EmailTaken
from watchword.domain.mail import OutgoingMail
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.stores.accounts import account_stores_for
from watchword.stores.base import Database
from watchword.stores.memory import MemoryDatabase

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def user() -> User:
    return User(
        id=new_id(),
        email=f"{uuid.uuid4().hex[:10]}@example.com",
        password_hash="x",
        created_at=NOW,
        updated_at=NOW,
    )


def token(owner: User, purpose: str, email: str | None = None, at: datetime = NOW) -> AccountToken:
    return AccountToken(
        id=new_id(),
        user_id=owner.id,
        purpose=purpose,
        token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        email=email or owner.email,
        created_at=at,
        expires_at=at + timedelta(minutes=30),
    )


def mail(owner: User) -> OutgoingMail:
    return OutgoingMail(
        id=new_id(),
        kind="verify_email",
        to=owner.email,
        subject="s",
        text="t",
        html="h",
        created_at=NOW,
        next_attempt_at=NOW,
        user_id=owner.id,
    )


def audit(owner: User) -> AuditEvent:
    return AuditEvent(type="test.step", at=NOW, user_id=owner.id)


async def test_registration_writes_user_token_mail_and_audit_or_nothing(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    first = token(alice, TokenPurpose.VERIFY_EMAIL)
    note = mail(alice)
    await stores.tokens.register(alice, audit=[audit(alice)], token=first, mail=[note])
    assert await db.users.get(alice.id) == alice
    assert await stores.tokens.get(first.token_hash) == first
    assert (await stores.outbox.get(note.id)) == note
    assert [e.type for e in await db.audit.for_user(alice.id)] == ["test.step"]

    clash = User(id=new_id(), email=alice.email, password_hash="x", created_at=NOW, updated_at=NOW)
    other = token(clash, TokenPurpose.VERIFY_EMAIL)
    try:
        await stores.tokens.register(clash, audit=[], token=other, mail=[mail(clash)])
    except EmailTaken:
        pass
    else:
        raise AssertionError("an address in use must be refused")
    assert await stores.tokens.get(other.token_hash) is None


async def test_tokens_are_single_use_and_superseded(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    first = token(alice, TokenPurpose.VERIFY_EMAIL)
    await stores.tokens.register(alice, audit=[], token=first, mail=[])
    second = token(alice, TokenPurpose.VERIFY_EMAIL, at=NOW + timedelta(seconds=1))
    await stores.tokens.issue(second, mail=[], audit=[])
    assert (await stores.tokens.get(first.token_hash)).used_at is not None  # type: ignore[union-attr]
    later = NOW + timedelta(seconds=2)
    assert await stores.tokens.verify_email(first, later, origin="t", audit=[], mail=[]) is None
    verified = await stores.tokens.verify_email(second, later, origin="t", audit=[], mail=[])
    assert verified is not None and verified.email_verified_at == later
    assert await stores.tokens.verify_email(second, later, origin="t", audit=[], mail=[]) is None


async def test_a_reset_uses_the_token_and_revokes_every_session(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    await stores.tokens.register(
        alice, audit=[], token=token(alice, TokenPurpose.VERIFY_EMAIL), mail=[]
    )
    session = Session(
        id=new_id(),
        user_id=alice.id,
        secret_hash=uuid.uuid4().hex,
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        idle_timeout_seconds=1800,
    )
    await db.sessions.create(session, limit=0, policy="evict-oldest", grace_seconds=0, origin="t")
    reset = token(alice, TokenPurpose.PASSWORD_RESET)
    await stores.tokens.issue(reset, mail=[], audit=[])
    later = NOW + timedelta(minutes=1)
    changed, revoked = await stores.tokens.reset_password(
        reset,
        "new-hash",
        later,
        origin="t",
        revoke_reason="password_reset",
        audit=lambda r: [audit(alice)],
        mail=[mail(alice)],
    )
    assert changed is not None and changed.password_hash == "new-hash"
    assert changed.email_verified_at == later
    assert [s.id for s in revoked] == [session.id]
    again = await stores.tokens.reset_password(
        reset,
        "other",
        later,
        origin="t",
        revoke_reason="password_reset",
        audit=lambda r: [],
        mail=[],
    )
    assert again == (None, [])
    expired = token(alice, TokenPurpose.PASSWORD_RESET)
    await stores.tokens.issue(expired, mail=[], audit=[])
    gone = await stores.tokens.reset_password(
        expired,
        "other",
        NOW + timedelta(hours=1),
        origin="t",
        revoke_reason="password_reset",
        audit=lambda r: [],
        mail=[],
    )
    assert gone == (None, [])


async def test_the_outbox_leases_each_row_to_one_sender(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    note = mail(alice)
    await stores.tokens.register(
        alice, audit=[], token=token(alice, TokenPurpose.VERIFY_EMAIL), mail=[note]
    )
    lease = NOW + timedelta(minutes=1)
    claimed = await stores.outbox.claim_due(NOW, lease, limit=100)
    assert note.id in [m.id for m in claimed]
    assert note.id not in [m.id for m in await stores.outbox.claim_due(NOW, lease, limit=100)]
    retry = NOW + timedelta(seconds=10)
    await stores.outbox.mark_failed(note.id, attempts=1, next_attempt_at=retry, error="down")
    failed = await stores.outbox.get(note.id[:8])
    assert failed is not None and failed.attempts == 1 and failed.last_error == "down"
    assert note.id in [m.id for m in await stores.outbox.claim_due(retry, lease, limit=100)]
    await stores.outbox.mark_sent(note.id, retry)
    sent = await stores.outbox.get(note.id)
    assert sent is not None and sent.sent_at == retry and sent.attempts == 2
    assert note.id not in [m.id for m in await stores.outbox.page(unsent_only=True)]


async def test_session_auth_is_recorded_and_replaced(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    await db.users.create(alice)
    session = Session(
        id=new_id(),
        user_id=alice.id,
        secret_hash=uuid.uuid4().hex,
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        idle_timeout_seconds=1800,
    )
    await db.sessions.create(session, limit=0, policy="evict-oldest", grace_seconds=0, origin="t")
    assert await stores.session_auth.get(session.id) is None
    await stores.session_auth.record(session.id, NOW, ["pwd"])
    await stores.session_auth.record(session.id, NOW + timedelta(seconds=5), ["pwd", "otp"])
    assert await stores.session_auth.get(session.id) == (
        NOW + timedelta(seconds=5),
        ["pwd", "otp"],
    )


async def test_a_sessions_amr_is_written_with_it_or_not_at_all(db: Database) -> None:
    stores = account_stores_for(db)
    alice = user()
    await db.users.create(alice)

    def session() -> Session:
        return Session(
            id=new_id(),
            user_id=alice.id,
            secret_hash=uuid.uuid4().hex,
            created_at=NOW,
            last_seen_at=NOW,
            expires_at=NOW + timedelta(hours=1),
            idle_timeout_seconds=1800,
        )

    signed_in = session()
    amr = ["pwd", "otp", "mfa"]
    await db.sessions.create(
        signed_in, limit=0, policy="evict-oldest", grace_seconds=0, origin="t", amr=amr
    )
    assert await stores.session_auth.get(signed_in.id) == (NOW, amr)

    if isinstance(db, MemoryDatabase):
        return  # below: a failing statement inside the SQL transaction
    # The audit row after the amr row fails: neither the session nor its amr row remain.
    failing = session()
    unwritable = AuditEvent(type="test.step", at=NOW, user_id=alice.id, details={"x": object()})
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await db.sessions.create(
            failing,
            limit=0,
            policy="evict-oldest",
            grace_seconds=0,
            origin="t",
            audit=[unwritable],
            amr=amr,
        )
    assert await db.sessions.get(failing.id) is None
    assert await stores.session_auth.get(failing.id) is None


async def test_second_factor_rows_are_used_once(db: Database) -> None:
    from watchword.domain.mfa import MfaChallenge, TotpFactor

    stores = account_stores_for(db)
    alice = user()
    await db.users.create(alice)
    mfa = stores.mfa
    assert await mfa.get_totp(alice.id) is None
    assert await mfa.put_pending(TotpFactor(alice.id, "sealed-1", NOW))
    assert await mfa.put_pending(TotpFactor(alice.id, "sealed-2", NOW))  # replaces it
    pending = await mfa.get_totp(alice.id)
    assert pending is not None and pending.secret_sealed == "sealed-2" and not pending.active
    assert not await mfa.use_step(alice.id, 10)  # not on yet
    assert not await mfa.remove(alice.id)
    assert await mfa.confirm(alice.id, 10, ["a" * 64, "b" * 64], NOW, audit=[audit(alice)])
    assert not await mfa.confirm(alice.id, 11, [], NOW)
    assert not await mfa.put_pending(TotpFactor(alice.id, "sealed-3", NOW))
    assert not await mfa.use_step(alice.id, 10)  # the confirming step
    assert await mfa.use_step(alice.id, 11)
    assert not await mfa.use_step(alice.id, 11)
    assert not await mfa.use_step(alice.id, 9)
    assert await mfa.unused_codes(alice.id) == 2
    assert await mfa.use_recovery_code(alice.id, "a" * 64, NOW)
    assert not await mfa.use_recovery_code(alice.id, "a" * 64, NOW)
    assert await mfa.unused_codes(alice.id) == 1
    await mfa.replace_codes(alice.id, ["c" * 64], NOW)
    assert not await mfa.use_recovery_code(alice.id, "b" * 64, NOW)
    assert await mfa.unused_codes(alice.id) == 1

    found = MfaChallenge("d" * 64, alice.id, "token", None, NOW, NOW + timedelta(minutes=5))
    await mfa.create_challenge(found)
    assert await mfa.get_challenge("d" * 64) == found
    assert not await mfa.use_challenge("d" * 64, NOW + timedelta(minutes=5))  # expired
    assert await mfa.use_challenge("d" * 64, NOW + timedelta(minutes=4))
    assert not await mfa.use_challenge("d" * 64, NOW + timedelta(minutes=4))
    assert await mfa.remove(alice.id)
    assert await mfa.get_totp(alice.id) is None and await mfa.unused_codes(alice.id) == 0


async def test_a_factor_reset_removes_every_factor_and_session_of_one_user(db: Database) -> None:
    from tests.stores.test_passkey_store import passkey
    from watchword.domain.mfa import TotpFactor

    stores = account_stores_for(db)
    alice, bob = user(), user()
    sessions: dict[str, Session] = {}
    for owner in (alice, bob):
        await db.users.create(owner)
        assert await stores.mfa.put_pending(TotpFactor(owner.id, "sealed", NOW))
        codes = [uuid.uuid4().hex * 2, uuid.uuid4().hex * 2]
        assert await stores.mfa.confirm(owner.id, 10, codes, NOW)
        await stores.passkeys.add(passkey(owner))
        sessions[owner.id] = Session(
            id=new_id(),
            user_id=owner.id,
            secret_hash=uuid.uuid4().hex,
            created_at=NOW,
            last_seen_at=NOW,
            expires_at=NOW + timedelta(hours=1),
            idle_timeout_seconds=1800,
        )
        await db.sessions.create(
            sessions[owner.id], limit=0, policy="evict-oldest", grace_seconds=0, origin="t"
        )
    notice = mail(alice)
    feed_before = await db.control.last_id()
    seen: list[object] = []

    def lines(done: object) -> list[AuditEvent]:
        seen.append(done)
        return [audit(alice)]

    later = NOW + timedelta(minutes=1)
    done = await stores.mfa.reset(
        alice.id, later, origin="t", revoke_reason="admin", audit=lines, mail=[notice]
    )
    assert done.totp is True and done.passkeys == 1
    assert [s.id for s in done.sessions] == [sessions[alice.id].id]
    assert seen == [done]  # the audit lines are made from what was removed
    assert await stores.mfa.get_totp(alice.id) is None
    assert await stores.mfa.unused_codes(alice.id) == 0
    assert await stores.passkeys.list_for(alice.id) == []
    ended = await db.sessions.get(sessions[alice.id].id)
    assert ended is not None and ended.revoked_at == later
    assert await db.control.last_id() > feed_before  # running nodes learn of it
    assert await stores.outbox.get(notice.id) is not None
    assert "test.step" in [e.type for e in await db.audit.for_user(alice.id)]
    # Bob keeps everything.
    bobs = await stores.mfa.get_totp(bob.id)
    assert bobs is not None and bobs.active and await stores.mfa.unused_codes(bob.id) == 2
    assert len(await stores.passkeys.list_for(bob.id)) == 1
    live = await db.sessions.get(sessions[bob.id].id)
    assert live is not None and live.revoked_at is None
    # Nothing left: a second reset removes nothing and still writes its lines.
    again = await stores.mfa.reset(
        alice.id, later, origin="t", revoke_reason="admin", audit=lines, mail=[]
    )
    assert (again.totp, again.passkeys, again.sessions) == (False, 0, [])
