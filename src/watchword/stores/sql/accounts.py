"""The SQL account-lifecycle stores: mailed tokens and the mail outbox (``stores/accounts.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watchword.domain import events
from watchword.domain.account_tokens import AccountToken, TokenPurpose
from watchword.domain.audit import AuditEvent
from watchword.domain.errors import EmailTaken
from watchword.domain.mail import OutgoingMail
from watchword.domain.mfa import FactorReset, MfaChallenge, TotpFactor
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.stores.sql import tables as t
from watchword.stores.sql.database import (
    _user,
    insert_audit,
    insert_user,
    record_control,
    revoke_where,
)
from watchword.stores.sql.engine import guarded, write_transaction
from watchword.stores.sql.passkeys import SqlPasskeyStore

NO_USER = ""  # matches no row: the user id of the work done for an unknown account


def _token(row: Row[Any]) -> AccountToken:
    return AccountToken(
        id=row.id,
        user_id=row.user_id,
        purpose=row.purpose,
        token_hash=row.token_hash,
        email=row.email,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


def _mail(row: Row[Any]) -> OutgoingMail:
    return OutgoingMail(
        id=row.id,
        kind=row.kind,
        user_id=row.user_id,
        to=row.to_address,
        subject=row.subject,
        text=row.text_body,
        html=row.html_body,
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )


async def insert_mail(conn: AsyncConnection, mail: Sequence[OutgoingMail]) -> None:
    """Queue mail inside the caller's transaction (the transactional outbox)."""
    for m in mail:
        await conn.execute(
            insert(t.mail_outbox).values(
                id=m.id,
                kind=m.kind,
                user_id=m.user_id,
                to_address=m.to,
                subject=m.subject,
                text_body=m.text,
                html_body=m.html,
                created_at=m.created_at,
                attempts=m.attempts,
                next_attempt_at=m.next_attempt_at,
            )
        )


async def _insert_token(conn: AsyncConnection, token: AccountToken) -> None:
    await conn.execute(
        insert(t.account_tokens).values(
            id=token.id,
            user_id=token.user_id,
            purpose=token.purpose,
            token_hash=token.token_hash,
            email=token.email,
            created_at=token.created_at,
            expires_at=token.expires_at,
            used_at=token.used_at,
        )
    )


async def _use_others(
    conn: AsyncConnection, user_id: str, purposes: Sequence[str], now: datetime
) -> None:
    await conn.execute(
        update(t.account_tokens)
        .where(
            t.account_tokens.c.user_id == user_id,
            t.account_tokens.c.purpose.in_(purposes),
            t.account_tokens.c.used_at.is_(None),
        )
        .values(used_at=now)
    )


async def _use(conn: AsyncConnection, token: AccountToken, now: datetime) -> bool:
    """Single use: only the first of two concurrent uses changes the row."""
    result = await conn.execute(
        update(t.account_tokens)
        .where(
            t.account_tokens.c.id == token.id,
            t.account_tokens.c.used_at.is_(None),
            t.account_tokens.c.expires_at > now,
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)


class SqlAccountTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def register(
        self,
        user: User,
        *,
        audit: Sequence[AuditEvent],
        token: AccountToken,
        mail: Sequence[OutgoingMail],
    ) -> User:
        try:
            async with write_transaction(self._engine) as conn:
                await insert_user(conn, user)
                await _insert_token(conn, token)
                await insert_mail(conn, mail)
                await insert_audit(conn, audit)
        except IntegrityError as exc:
            raise EmailTaken() from exc
        return user

    @guarded
    async def issue(
        self, token: AccountToken, *, mail: Sequence[OutgoingMail], audit: Sequence[AuditEvent]
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await _use_others(conn, token.user_id, [token.purpose], token.created_at)
            await _insert_token(conn, token)
            await insert_mail(conn, mail)
            await insert_audit(conn, audit)

    @guarded
    async def issue_nothing(
        self, token_hash: str, now: datetime, *, audit: Sequence[AuditEvent]
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await _use_others(conn, NO_USER, [TokenPurpose.PASSWORD_RESET], now)
            # Two reads stand in for the two inserts of ``issue`` (same round trips).
            await conn.execute(
                select(t.account_tokens.c.id).where(t.account_tokens.c.token_hash == token_hash)
            )
            await conn.execute(select(t.mail_outbox.c.id).where(t.mail_outbox.c.id == NO_USER))
            await insert_audit(conn, audit)

    @guarded
    async def get(self, token_hash: str) -> AccountToken | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.account_tokens).where(t.account_tokens.c.token_hash == token_hash)
                )
            ).first()
        return _token(row) if row else None

    @guarded
    async def verify_email(
        self,
        token: AccountToken,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent],
        mail: Sequence[OutgoingMail],
    ) -> User | None:
        changes: dict[str, Any] = {"email_verified_at": now, "updated_at": now}
        if token.purpose == TokenPurpose.CHANGE_EMAIL:
            changes["email"] = token.email
        try:
            async with write_transaction(self._engine) as conn:
                if not await _use(conn, token, now):
                    return None
                row = (
                    await conn.execute(
                        update(t.users)
                        .where(t.users.c.id == token.user_id)
                        .values(**changes)
                        .returning(*t.users.c)
                    )
                ).first()
                if row is None:
                    return None
                user = _user(row)
                # A verified address ends every other pending verification of the account.
                await _use_others(
                    conn,
                    user.id,
                    [TokenPurpose.VERIFY_EMAIL, TokenPurpose.CHANGE_EMAIL],
                    now,
                )
                await record_control(
                    conn, [events.user_changed(user.id, disabled=user.disabled)], now, origin
                )
                await insert_mail(conn, mail)
                await insert_audit(conn, audit)
        except IntegrityError as exc:
            raise EmailTaken() from exc
        return user

    @guarded
    async def reset_password(
        self,
        token: AccountToken,
        password_hash: str,
        now: datetime,
        *,
        origin: str,
        revoke_reason: str,
        audit: Callable[[list[Session]], Sequence[AuditEvent]],
        mail: Sequence[OutgoingMail],
    ) -> tuple[User | None, list[Session]]:
        async with write_transaction(self._engine) as conn:
            if not await _use(conn, token, now):
                return None, []
            current = (
                await conn.execute(select(t.users).where(t.users.c.id == token.user_id))
            ).first()
            if current is None:
                return None, []
            values: dict[str, Any] = {"password_hash": password_hash, "updated_at": now}
            if current.email == token.email and current.email_verified_at is None:
                values["email_verified_at"] = now  # the link reached this mailbox
            row = (
                await conn.execute(
                    update(t.users)
                    .where(t.users.c.id == token.user_id)
                    .values(**values)
                    .returning(*t.users.c)
                )
            ).first()
            assert row is not None
            await _use_others(conn, token.user_id, [TokenPurpose.PASSWORD_RESET], now)
            revoked = await revoke_where(
                conn,
                and_(t.sessions.c.user_id == token.user_id, t.sessions.c.expires_at > now),
                revoke_reason,
                now,
                origin,
            )
            await record_control(
                conn, [events.user_changed(token.user_id, disabled=bool(row.disabled))], now, origin
            )
            await insert_mail(conn, mail)
            await insert_audit(conn, audit(revoked))
        return _user(row), revoked

    @guarded
    async def queue(
        self, mail: Sequence[OutgoingMail], *, audit: Sequence[AuditEvent] = ()
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await insert_mail(conn, mail)
            await insert_audit(conn, audit)


class SqlMailOutbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def claim_due(
        self, now: datetime, lease_until: datetime, *, limit: int
    ) -> list[OutgoingMail]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.mail_outbox)
                    .where(
                        t.mail_outbox.c.sent_at.is_(None), t.mail_outbox.c.next_attempt_at <= now
                    )
                    .order_by(t.mail_outbox.c.next_attempt_at, t.mail_outbox.c.created_at)
                    .limit(limit)
                )
            ).all()
        claimed: list[OutgoingMail] = []
        for row in rows:
            async with write_transaction(self._engine) as conn:
                result = await conn.execute(
                    update(t.mail_outbox)
                    .where(
                        t.mail_outbox.c.id == row.id,
                        t.mail_outbox.c.sent_at.is_(None),
                        t.mail_outbox.c.next_attempt_at == row.next_attempt_at,
                    )
                    .values(next_attempt_at=lease_until)
                )
            if result.rowcount:
                claimed.append(_mail(row))
        return claimed

    @guarded
    async def mark_sent(self, mail_id: str, now: datetime) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(t.mail_outbox)
                .where(t.mail_outbox.c.id == mail_id)
                .values(sent_at=now, attempts=t.mail_outbox.c.attempts + 1, last_error=None)
            )

    @guarded
    async def mark_failed(
        self, mail_id: str, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(t.mail_outbox)
                .where(t.mail_outbox.c.id == mail_id, t.mail_outbox.c.sent_at.is_(None))
                .values(attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:500])
            )

    @guarded
    async def get(self, mail_id: str) -> OutgoingMail | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(t.mail_outbox).where(t.mail_outbox.c.id == mail_id))
            ).first()
            if row is None and len(mail_id) >= 6:
                rows = (
                    await conn.execute(
                        select(t.mail_outbox)
                        .where(t.mail_outbox.c.id.startswith(mail_id, autoescape=True))
                        .limit(2)
                    )
                ).all()
                row = rows[0] if len(rows) == 1 else None
        return _mail(row) if row else None

    @guarded
    async def page(self, *, limit: int = 50, unsent_only: bool = False) -> list[OutgoingMail]:
        query = select(t.mail_outbox)
        if unsent_only:
            query = query.where(t.mail_outbox.c.sent_at.is_(None))
        query = query.order_by(t.mail_outbox.c.created_at.desc(), t.mail_outbox.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_mail(row) for row in await conn.execute(query)]


class SqlSessionAuthStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def get(self, session_id: str) -> tuple[datetime, list[str]] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.session_auth).where(t.session_auth.c.session_id == session_id)
                )
            ).first()
        return (row.auth_time, list(row.amr)) if row else None

    @guarded
    async def record(
        self,
        session_id: str,
        auth_time: datetime,
        amr: Sequence[str],
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(t.session_auth).where(t.session_auth.c.session_id == session_id)
            )
            await conn.execute(
                insert(t.session_auth).values(
                    session_id=session_id, auth_time=auth_time, amr=list(amr)
                )
            )
            await insert_audit(conn, audit)


def _totp(row: Row[Any]) -> TotpFactor:
    return TotpFactor(
        user_id=row.user_id,
        secret_sealed=row.secret_sealed,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        last_step=row.last_step,
    )


def _challenge(row: Row[Any]) -> MfaChallenge:
    return MfaChallenge(
        challenge_hash=row.challenge_hash,
        user_id=row.user_id,
        mode=row.mode,
        device_name=row.device_name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


async def _set_codes(
    conn: AsyncConnection, user_id: str, code_hashes: Sequence[str], now: datetime
) -> None:
    await conn.execute(delete(t.recovery_codes).where(t.recovery_codes.c.user_id == user_id))
    if code_hashes:
        await conn.execute(
            insert(t.recovery_codes),
            [{"code_hash": h, "user_id": user_id, "created_at": now} for h in code_hashes],
        )


class SqlMfaStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def get_totp(self, user_id: str) -> TotpFactor | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(t.user_totp).where(t.user_totp.c.user_id == user_id))
            ).first()
        return _totp(row) if row else None

    @guarded
    async def put_pending(self, factor: TotpFactor, *, audit: Sequence[AuditEvent] = ()) -> bool:
        c = t.user_totp.c
        async with write_transaction(self._engine) as conn:
            on = await conn.scalar(
                select(func.count()).where(c.user_id == factor.user_id, c.confirmed_at.is_not(None))
            )
            if on:
                return False
            await conn.execute(delete(t.user_totp).where(c.user_id == factor.user_id))
            await conn.execute(
                insert(t.user_totp).values(
                    user_id=factor.user_id,
                    secret_sealed=factor.secret_sealed,
                    created_at=factor.created_at,
                )
            )
            await insert_audit(conn, audit)
        return True

    @guarded
    async def confirm(
        self,
        user_id: str,
        step: int,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.user_totp)
                .where(t.user_totp.c.user_id == user_id, t.user_totp.c.confirmed_at.is_(None))
                .values(confirmed_at=now, last_step=step)
            )
            if done.rowcount != 1:
                return False
            await _set_codes(conn, user_id, code_hashes, now)
            await insert_audit(conn, audit)
        return True

    @guarded
    async def use_step(self, user_id: str, step: int) -> bool:
        c = t.user_totp.c
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.user_totp)
                .where(
                    c.user_id == user_id,
                    c.confirmed_at.is_not(None),
                    or_(c.last_step.is_(None), c.last_step < step),
                )
                .values(last_step=step)
            )
        return bool(done.rowcount == 1)

    @guarded
    async def remove(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                delete(t.user_totp).where(
                    t.user_totp.c.user_id == user_id, t.user_totp.c.confirmed_at.is_not(None)
                )
            )
            if done.rowcount != 1:
                return False
            await conn.execute(
                delete(t.recovery_codes).where(t.recovery_codes.c.user_id == user_id)
            )
            await insert_audit(conn, audit)
        return True

    @guarded
    async def reset(
        self,
        user_id: str,
        now: datetime,
        *,
        origin: str,
        revoke_reason: str,
        audit: Callable[[FactorReset], Sequence[AuditEvent]],
        mail: Sequence[OutgoingMail],
    ) -> FactorReset:
        async with write_transaction(self._engine) as conn:
            confirmed = (
                await conn.execute(
                    delete(t.user_totp)
                    .where(t.user_totp.c.user_id == user_id)
                    .returning(t.user_totp.c.confirmed_at)
                )
            ).all()
            await conn.execute(
                delete(t.recovery_codes).where(t.recovery_codes.c.user_id == user_id)
            )
            passkeys = await conn.execute(delete(t.passkeys).where(t.passkeys.c.user_id == user_id))
            revoked = await revoke_where(
                conn,
                and_(t.sessions.c.user_id == user_id, t.sessions.c.expires_at > now),
                revoke_reason,
                now,
                origin,
            )
            done = FactorReset(
                totp=any(row.confirmed_at is not None for row in confirmed),
                passkeys=int(passkeys.rowcount or 0),
                sessions=revoked,
            )
            await insert_mail(conn, mail)
            await insert_audit(conn, audit(done))
        return done

    @guarded
    async def replace_codes(
        self,
        user_id: str,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await _set_codes(conn, user_id, code_hashes, now)
            await insert_audit(conn, audit)

    @guarded
    async def use_recovery_code(
        self, user_id: str, code_hash: str, now: datetime, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        c = t.recovery_codes.c
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.recovery_codes)
                .where(c.code_hash == code_hash, c.user_id == user_id, c.used_at.is_(None))
                .values(used_at=now)
            )
            if done.rowcount != 1:
                return False
            await insert_audit(conn, audit)
        return True

    @guarded
    async def unused_codes(self, user_id: str) -> int:
        c = t.recovery_codes.c
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).where(c.user_id == user_id, c.used_at.is_(None))
            )
        return int(count or 0)

    @guarded
    async def create_challenge(self, challenge: MfaChallenge) -> None:
        c = t.mfa_challenges.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(t.mfa_challenges).where(
                    c.user_id == challenge.user_id, c.expires_at <= challenge.created_at
                )
            )
            await conn.execute(
                insert(t.mfa_challenges).values(
                    challenge_hash=challenge.challenge_hash,
                    user_id=challenge.user_id,
                    mode=challenge.mode,
                    device_name=challenge.device_name,
                    created_at=challenge.created_at,
                    expires_at=challenge.expires_at,
                )
            )

    @guarded
    async def get_challenge(self, challenge_hash: str) -> MfaChallenge | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.mfa_challenges).where(
                        t.mfa_challenges.c.challenge_hash == challenge_hash
                    )
                )
            ).first()
        return _challenge(row) if row else None

    @guarded
    async def use_challenge(self, challenge_hash: str, now: datetime) -> bool:
        c = t.mfa_challenges.c
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.mfa_challenges)
                .where(c.challenge_hash == challenge_hash, c.used_at.is_(None), c.expires_at > now)
                .values(used_at=now)
            )
        return bool(done.rowcount == 1)


class SqlAccountStores:
    def __init__(self, engine: AsyncEngine) -> None:
        self.tokens = SqlAccountTokenStore(engine)
        self.outbox = SqlMailOutbox(engine)
        self.session_auth = SqlSessionAuthStore(engine)
        self.mfa = SqlMfaStore(engine)
        self.passkeys = SqlPasskeyStore(engine)


if TYPE_CHECKING:
    from watchword.stores.accounts import AccountStores, AccountTokenStore, MailOutbox, MfaStore

    _m: MfaStore = SqlMfaStore(None)  # type: ignore[arg-type]

    _t: AccountTokenStore = SqlAccountTokenStore(None)  # type: ignore[arg-type]
    _o: MailOutbox = SqlMailOutbox(None)  # type: ignore[arg-type]
    _s: AccountStores = SqlAccountStores(None)  # type: ignore[arg-type]
