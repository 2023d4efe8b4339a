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
from watchword.domain.sessions import Session
from watchword.domain.users import User

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
        self.rows: dict[str, tuple[datetime, list[str]]] = {}

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


class MemoryAccountStores:
    def __init__(self, db: MemoryDatabase) -> None:
        self.outbox = MemoryMailOutbox()
        self.tokens = MemoryAccountTokenStore(db, self.outbox)
        self.session_auth = MemorySessionAuthStore(db)


if TYPE_CHECKING:
    from watchword.stores.accounts import AccountStores, AccountTokenStore, MailOutbox

    _t: AccountTokenStore = MemoryAccountTokenStore(None, MemoryMailOutbox())  # type: ignore[arg-type]
    _o: MailOutbox = MemoryMailOutbox()
    _s: AccountStores = MemoryAccountStores(None)  # type: ignore[arg-type]
