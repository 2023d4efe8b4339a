"""In-process account-lifecycle stores with the same contracts as SQL (``stores/accounts.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watchword.domain import events
from watchword.domain.account_tokens import AccountToken, TokenPurpose
from watchword.domain.audit import AuditEvent
from watchword.domain.errors import EmailTaken
from watchword.domain.mail import OutgoingMail
from watchword.domain.mfa import FactorReset, MfaChallenge, TotpFactor
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.stores.memory_passkeys import MemoryPasskeyStore

if TYPE_CHECKING:
    from watchword.stores.memory import MemoryDatabase


class MemoryAccountTokenStore:
    def __init__(self, db: MemoryDatabase, outbox: MemoryMailOutbox) -> None:
        self._db = db
        self._outbox = outbox
        self.rows: dict[str, AccountToken] = {}

    def _use_others(self, user_id: str, purposes: Sequence[str], now: datetime) -> None:
        for key, token in list(self.rows.items()):
            if token.user_id == user_id and token.purpose in purposes and token.used_at is None:
                self.rows[key] = replace(token, used_at=now)

    def _use(self, token: AccountToken, now: datetime) -> bool:
        current = self.rows.get(token.token_hash)
        if current is None or not current.usable(now):
            return False
        self.rows[token.token_hash] = replace(current, used_at=now)
        return True

    async def _write(self, mail: Sequence[OutgoingMail], audit: Sequence[AuditEvent]) -> None:
        for m in mail:
            self._outbox.rows[m.id] = m
        for event in audit:
            await self._db.audit.append(event)

    async def register(
        self,
        user: User,
        *,
        audit: Sequence[AuditEvent],
        token: AccountToken,
        mail: Sequence[OutgoingMail],
    ) -> User:
        await self._db.users.create(user)
        self.rows[token.token_hash] = token
        await self._write(mail, audit)
        return user

    async def issue(
        self, token: AccountToken, *, mail: Sequence[OutgoingMail], audit: Sequence[AuditEvent]
    ) -> None:
        self._use_others(token.user_id, [token.purpose], token.created_at)
        self.rows[token.token_hash] = token
        await self._write(mail, audit)

    async def issue_nothing(
        self, token_hash: str, now: datetime, *, audit: Sequence[AuditEvent]
    ) -> None:
        await self._write((), audit)

    async def get(self, token_hash: str) -> AccountToken | None:
        return self.rows.get(token_hash)

    async def verify_email(
        self,
        token: AccountToken,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent],
        mail: Sequence[OutgoingMail],
    ) -> User | None:
        user = self._db.user_rows.get(token.user_id)
        if user is None:
            return None
        changes: dict[str, Any] = {"email_verified_at": now}
        if token.purpose == TokenPurpose.CHANGE_EMAIL:
            if any(u.email == token.email and u.id != user.id for u in self._db.user_rows.values()):
                raise EmailTaken()
            changes["email"] = token.email
        if not self._use(token, now):
            return None
        user = replace(user, **changes, updated_at=now)
        self._db.user_rows[user.id] = user
        self._use_others(user.id, [TokenPurpose.VERIFY_EMAIL, TokenPurpose.CHANGE_EMAIL], now)
        self._db.control.record([events.user_changed(user.id, disabled=user.disabled)], now, origin)
        await self._write(mail, audit)
        return user

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
        user = self._db.user_rows.get(token.user_id)
        if user is None or not self._use(token, now):
            return None, []
        verified = user.email_verified_at
        if user.email == token.email and verified is None:
            verified = now
        user = replace(
            user, password_hash=password_hash, email_verified_at=verified, updated_at=now
        )
        self._db.user_rows[user.id] = user
        self._use_others(user.id, [TokenPurpose.PASSWORD_RESET], now)
        revoked = self._db.revoke_matching(
            lambda s: s.user_id == user.id and s.expires_at > now, revoke_reason, now, origin
        )
        self._db.control.record([events.user_changed(user.id, disabled=user.disabled)], now, origin)
        await self._write(mail, audit(revoked))
        return user, revoked

    async def queue(
        self, mail: Sequence[OutgoingMail], *, audit: Sequence[AuditEvent] = ()
    ) -> None:
        await self._write(mail, audit)


class MemoryMailOutbox:
    def __init__(self) -> None:
        self.rows: dict[str, OutgoingMail] = {}

    async def claim_due(
        self, now: datetime, lease_until: datetime, *, limit: int
    ) -> list[OutgoingMail]:
        due = sorted(
            (m for m in self.rows.values() if m.sent_at is None and m.next_attempt_at <= now),
            key=lambda m: (m.next_attempt_at, m.created_at),
        )[:limit]
        for m in due:
            self.rows[m.id] = replace(m, next_attempt_at=lease_until)
        return due

    async def mark_sent(self, mail_id: str, now: datetime) -> None:
        m = self.rows.get(mail_id)
        if m is not None:
            self.rows[mail_id] = replace(m, sent_at=now, attempts=m.attempts + 1, last_error=None)

    async def mark_failed(
        self, mail_id: str, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        m = self.rows.get(mail_id)
        if m is not None and m.sent_at is None:
            self.rows[mail_id] = replace(
                m, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:500]
            )

    async def get(self, mail_id: str) -> OutgoingMail | None:
        if mail_id in self.rows:
            return self.rows[mail_id]
        matches = [
            m for key, m in self.rows.items() if len(mail_id) >= 6 and key.startswith(mail_id)
        ]
        return matches[0] if len(matches) == 1 else None

    async def page(self, *, limit: int = 50, unsent_only: bool = False) -> list[OutgoingMail]:
        rows = [m for m in self.rows.values() if not unsent_only or m.sent_at is None]
        return sorted(rows, key=lambda m: m.created_at, reverse=True)[:limit]


class MemorySessionAuthStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        # Shared with the session store: a sign-in's row is written with its session.
        self.rows: dict[str, tuple[datetime, list[str]]] = db.session_auth if db else {}

    async def get(self, session_id: str) -> tuple[datetime, list[str]] | None:
        return self.rows.get(session_id)

    async def record(
        self,
        session_id: str,
        auth_time: datetime,
        amr: Sequence[str],
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None:
        self.rows[session_id] = (auth_time, list(amr))
        for event in audit:
            await self._db.audit.append(event)


class MemoryMfaStore:
    def __init__(
        self, db: MemoryDatabase, passkeys: MemoryPasskeyStore, outbox: MemoryMailOutbox
    ) -> None:
        self._db = db
        self._passkeys = passkeys
        self._outbox = outbox
        self.totp: dict[str, TotpFactor] = {}
        self.codes: dict[str, tuple[str, datetime | None]] = {}  # digest -> (user, used_at)
        self.challenges: dict[str, MfaChallenge] = {}

    async def _audit(self, audit: Sequence[AuditEvent]) -> None:
        for event in audit:
            await self._db.audit.append(event)

    async def get_totp(self, user_id: str) -> TotpFactor | None:
        return self.totp.get(user_id)

    async def put_pending(self, factor: TotpFactor, *, audit: Sequence[AuditEvent] = ()) -> bool:
        current = self.totp.get(factor.user_id)
        if current is not None and current.active:
            return False
        self.totp[factor.user_id] = factor
        await self._audit(audit)
        return True

    def _set_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        for key in [k for k, (owner, _) in self.codes.items() if owner == user_id]:
            del self.codes[key]
        for code_hash in code_hashes:
            self.codes[code_hash] = (user_id, None)

    async def confirm(
        self,
        user_id: str,
        step: int,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        current = self.totp.get(user_id)
        if current is None or current.active:
            return False
        self.totp[user_id] = replace(current, confirmed_at=now, last_step=step)
        self._set_codes(user_id, code_hashes)
        await self._audit(audit)
        return True

    async def use_step(self, user_id: str, step: int) -> bool:
        current = self.totp.get(user_id)
        if current is None or not current.active:
            return False
        if current.last_step is not None and current.last_step >= step:
            return False
        self.totp[user_id] = replace(current, last_step=step)
        return True

    async def remove(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        current = self.totp.get(user_id)
        if current is None or not current.active:
            return False
        del self.totp[user_id]
        self._set_codes(user_id, ())
        await self._audit(audit)
        return True

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
        # No await before the audit rows: no other task sees a half-done reset.
        current = self.totp.pop(user_id, None)
        self._set_codes(user_id, ())
        mine = [k for k, p in self._passkeys.passkeys.items() if p.user_id == user_id]
        for key in mine:
            del self._passkeys.passkeys[key]
        revoked = self._db.revoke_matching(
            lambda s: s.user_id == user_id and s.expires_at > now, revoke_reason, now, origin
        )
        done = FactorReset(
            totp=current is not None and current.active, passkeys=len(mine), sessions=revoked
        )
        for m in mail:
            self._outbox.rows[m.id] = m
        await self._audit(audit(done))
        return done

    async def replace_codes(
        self,
        user_id: str,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None:
        self._set_codes(user_id, code_hashes)
        await self._audit(audit)

    async def use_recovery_code(
        self, user_id: str, code_hash: str, now: datetime, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        row = self.codes.get(code_hash)
        if row is None or row[0] != user_id or row[1] is not None:
            return False
        self.codes[code_hash] = (user_id, now)
        await self._audit(audit)
        return True

    async def unused_codes(self, user_id: str) -> int:
        return sum(1 for owner, used in self.codes.values() if owner == user_id and used is None)

    async def create_challenge(self, challenge: MfaChallenge) -> None:
        for key, old in list(self.challenges.items()):
            if old.user_id == challenge.user_id and old.expires_at <= challenge.created_at:
                del self.challenges[key]
        self.challenges[challenge.challenge_hash] = challenge

    async def get_challenge(self, challenge_hash: str) -> MfaChallenge | None:
        return self.challenges.get(challenge_hash)

    async def use_challenge(self, challenge_hash: str, now: datetime) -> bool:
        current = self.challenges.get(challenge_hash)
        if current is None or not current.usable(now):
            return False
        self.challenges[challenge_hash] = replace(current, used_at=now)
        return True


class MemoryAccountStores:
    def __init__(self, db: MemoryDatabase) -> None:
        self.outbox = MemoryMailOutbox()
        self.tokens = MemoryAccountTokenStore(db, self.outbox)
        self.session_auth = MemorySessionAuthStore(db)
        self.passkeys = MemoryPasskeyStore(db)
        self.mfa = MemoryMfaStore(db, self.passkeys, self.outbox)


if TYPE_CHECKING:
    from watchword.stores.accounts import AccountStores, AccountTokenStore, MailOutbox, MfaStore

    _m: MfaStore = MemoryMfaStore(None, None, MemoryMailOutbox())  # type: ignore[arg-type]

    _t: AccountTokenStore = MemoryAccountTokenStore(None, MemoryMailOutbox())  # type: ignore[arg-type]
    _o: MailOutbox = MemoryMailOutbox()
    _s: AccountStores = MemoryAccountStores(None)  # type: ignore[arg-type]
