"""In-process stores with the same contracts as SQL: for unit tests and experiments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watchword.domain import events
from watchword.domain.audit import AuditEvent
from watchword.domain.errors import Conflict, EmailTaken, SessionLimitReached
from watchword.domain.sessions import RevokeReason, Session
from watchword.domain.users import User
from watchword.stores.base import CONTROL_PAGE, ControlRecord


class MemoryDatabase:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.users = MemoryUserStore(self)
        self.sessions = MemorySessionStore(self)
        self.audit = MemoryAuditStore()
        self.control = MemoryControlFeed()
        self.user_rows: dict[str, User] = {}
        self.session_rows: dict[str, Session] = {}
        # When and how each session last proved its user (the account stores' session_auth).
        self.session_auth: dict[str, tuple[datetime, list[str]]] = {}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def revoke_matching(self, match: Any, reason: str, now: datetime, origin: str) -> list[Session]:
        revoked = []
        for sid, s in list(self.session_rows.items()):
            if s.revoked_at is None and match(s):
                s = replace(s, revoked_at=now, revoked_reason=reason)
                self.session_rows[sid] = s
                revoked.append(s)
        self.control.record(
            [
                events.session_revoked(s.id, s.user_id, reason, s.expires_at.timestamp())
                for s in revoked
            ],
            now,
            origin,
        )
        return revoked


class MemoryUserStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    async def create(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> User:
        async with self._db._lock:
            if user.id in self._db.user_rows:
                raise Conflict("user id collision")  # insert-only, as the SQL primary key
            if any(u.email == user.email for u in self._db.user_rows.values()):
                raise EmailTaken()
            self._db.user_rows[user.id] = user
            for event in audit:
                await self._db.audit.append(event)
        return user

    async def get(self, user_id: str) -> User | None:
        return self._db.user_rows.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self._db.user_rows.values() if u.email == email), None)

    async def page(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        ordered = sorted(self._db.user_rows.values(), key=lambda u: (u.created_at, u.id))
        return ordered[offset : offset + limit]

    async def count(self) -> int:
        return len(self._db.user_rows)

    async def update(
        self, user_id: str, changes: Mapping[str, Any], now: datetime, *, origin: str
    ) -> User | None:
        async with self._db._lock:
            user = self._db.user_rows.get(user_id)
            if user is None:
                return None
            values = dict(changes)
            if "roles" in values:
                values["roles"] = tuple(values["roles"])
            if "email" in values and any(
                u.email == values["email"] and u.id != user_id for u in self._db.user_rows.values()
            ):
                raise EmailTaken()
            user = replace(user, **values, updated_at=now)
            self._db.user_rows[user_id] = user
            self._db.control.record(
                [events.user_changed(user_id, disabled=user.disabled)], now, origin
            )
        return user

    async def set_disabled(
        self,
        user_id: str,
        disabled: bool,
        now: datetime,
        *,
        origin: str,
        changes: Mapping[str, Any] | None = None,
        audit: Callable[[list[Session]], Sequence[AuditEvent]] | None = None,
    ) -> tuple[User | None, list[Session]]:
        async with self._db._lock:
            user = self._db.user_rows.get(user_id)
            if user is None:
                return None, []
            values = dict(changes or {})
            if "roles" in values:
                values["roles"] = tuple(values["roles"])
            user = replace(user, **values, disabled=disabled, updated_at=now)
            self._db.user_rows[user_id] = user
            revoked = []
            if disabled:
                revoked = self._db.revoke_matching(
                    lambda s: s.user_id == user_id, RevokeReason.USER_DISABLED, now, origin
                )
            self._db.control.record([events.user_changed(user_id, disabled=disabled)], now, origin)
            for event in audit(revoked) if audit else ():
                await self._db.audit.append(event)
        return user, revoked

    async def change_password(
        self,
        user_id: str,
        password_hash: str,
        now: datetime,
        *,
        origin: str,
        keep_session_id: str | None,
        audit: Callable[[list[Session]], Sequence[AuditEvent]],
    ) -> tuple[User | None, list[Session]]:
        async with self._db._lock:
            user = self._db.user_rows.get(user_id)
            if user is None:
                return None, []
            user = replace(user, password_hash=password_hash, updated_at=now)
            self._db.user_rows[user_id] = user
            revoked = self._db.revoke_matching(
                lambda s: s.user_id == user_id and s.id != keep_session_id and s.expires_at > now,
                RevokeReason.PASSWORD_CHANGED,
                now,
                origin,
            )
            for event in audit(revoked):
                await self._db.audit.append(event)
        return user, revoked

    async def delete(self, user_id: str, now: datetime, *, origin: str) -> list[Session]:
        async with self._db._lock:
            revoked = self._db.revoke_matching(
                lambda s: s.user_id == user_id, RevokeReason.USER_DISABLED, now, origin
            )
            if self._db.user_rows.pop(user_id, None) is not None:
                self._db.control.record(
                    [events.user_changed(user_id, disabled=True, deleted=True)], now, origin
                )
            for sid in [sid for sid, s in self._db.session_rows.items() if s.user_id == user_id]:
                del self._db.session_rows[sid]
        return revoked


class MemorySessionStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    async def create(
        self,
        session: Session,
        *,
        limit: int,
        policy: str,
        grace_seconds: int,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        amr: Sequence[str] | None = None,
    ) -> list[Session]:
        now = session.created_at
        async with self._db._lock:
            if session.user_id not in self._db.user_rows:
                raise KeyError(session.user_id)
            if session.id in self._db.session_rows:
                raise ValueError("session id collision")
            evicted: list[Session] = []
            if limit > 0:
                grace = timedelta(seconds=grace_seconds)
                live = sorted(
                    (
                        s
                        for s in self._db.session_rows.values()
                        if s.user_id == session.user_id
                        and s.revoked_at is None
                        and s.expires_at > now
                        and s.idle_expires_at() + grace > now
                    ),
                    key=lambda s: (s.created_at, s.id),
                )
                excess = len(live) - limit + 1
                if excess > 0:
                    if policy == "reject":
                        raise SessionLimitReached()
                    victims = {s.id for s in live[:excess]}
                    evicted = self._db.revoke_matching(
                        lambda s: s.id in victims, RevokeReason.EVICTED, now, origin
                    )
            self._db.session_rows[session.id] = session
            if amr is not None:
                self._db.session_auth[session.id] = (session.created_at, list(amr))
            for event in audit:
                await self._db.audit.append(event)
        return evicted

    async def get(self, session_id: str) -> Session | None:
        return self._db.session_rows.get(session_id)

    async def get_by_secret_hash(self, secret_hash: str) -> Session | None:
        return next(
            (s for s in self._db.session_rows.values() if s.secret_hash == secret_hash), None
        )

    async def list_live(self, user_id: str, now: datetime) -> list[Session]:
        live = [
            s
            for s in self._db.session_rows.values()
            if s.user_id == user_id and s.revoked_at is None and s.expires_at > now
        ]
        return sorted(live, key=lambda s: (s.created_at, s.id), reverse=True)

    async def list_all_live(self, now: datetime, *, limit: int) -> list[Session]:
        live = [
            s for s in self._db.session_rows.values() if s.revoked_at is None and s.expires_at > now
        ]
        return sorted(live, key=lambda s: (s.created_at, s.id), reverse=True)[:limit]

    async def touch(self, last_seen: Mapping[str, datetime]) -> None:
        for sid, seen in last_seen.items():
            s = self._db.session_rows.get(sid)
            if s is not None and s.revoked_at is None and s.last_seen_at < seen:
                self._db.session_rows[sid] = replace(s, last_seen_at=seen)

    async def revoke(
        self,
        session_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        owner_id: str | None = None,
    ) -> Session | None:
        def matches(s: Session) -> bool:
            return s.id == session_id and owner_id in (None, s.user_id)

        async with self._db._lock:
            revoked = self._db.revoke_matching(matches, reason, now, origin)
            for event in audit if revoked else ():
                await self._db.audit.append(event)
        return revoked[0] if revoked else None

    async def revoke_all(
        self,
        user_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        except_session_id: str | None = None,
    ) -> list[Session]:
        async with self._db._lock:
            return self._db.revoke_matching(
                lambda s: s.user_id == user_id and s.id != except_session_id and s.expires_at > now,
                reason,
                now,
                origin,
            )

    async def revoke_kind(
        self, kind: str, reason: str, now: datetime, *, origin: str
    ) -> list[Session]:
        async with self._db._lock:
            return self._db.revoke_matching(
                lambda s: s.kind == kind and s.expires_at > now, reason, now, origin
            )

    async def clear_expired(self, now: datetime, *, keep_revoked_for: int) -> int:
        cutoff = now - timedelta(seconds=keep_revoked_for)
        doomed = [
            sid
            for sid, s in self._db.session_rows.items()
            if s.expires_at < cutoff or (s.revoked_at is not None and s.revoked_at < cutoff)
        ]
        for sid in doomed:
            del self._db.session_rows[sid]
        return len(doomed)


class MemoryAuditStore:
    def __init__(self) -> None:
        self._events: list[AuditEvent] = []

    async def append(self, event: AuditEvent) -> None:
        self._events.append(replace(event, id=len(self._events) + 1))  # append-only: ids hold

    async def for_user(
        self, user_id: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEvent]:
        mine = [
            e
            for e in reversed(self._events)
            if e.user_id == user_id and (before_id is None or (e.id or 0) < before_id)
        ]
        return mine[:limit]

    async def tail(self, *, limit: int = 50, after_id: int | None = None) -> list[AuditEvent]:
        if after_id is None:
            return self._events[-limit:]
        return [e for e in self._events if (e.id or 0) > after_id][:limit]


class MemoryControlFeed:
    def __init__(self) -> None:
        self._records: list[ControlRecord] = []
        self._next_id = 1

    def record(self, payloads: Sequence[dict[str, Any]], now: datetime, origin: str) -> list[int]:
        ids = []
        for payload in payloads:
            record = ControlRecord(id=self._next_id, at=now, origin=origin, payload=payload)
            self._next_id += 1
            self._records.append(record)
            ids.append(record.id)
        return ids

    async def append(
        self, payloads: Sequence[dict[str, Any]], now: datetime, *, origin: str
    ) -> list[int]:
        return self.record(payloads, now, origin)

    async def read_after(self, after_id: int, *, limit: int = CONTROL_PAGE) -> list[ControlRecord]:
        return [r for r in self._records if r.id > after_id][:limit]

    async def last_id(self) -> int:
        return self._records[-1].id if self._records else 0

    async def clear_older_than(self, cutoff: datetime) -> int:
        before = len(self._records)
        self._records = [r for r in self._records if r.at >= cutoff]
        return before - len(self._records)


if TYPE_CHECKING:
    from watchword.stores.base import Database

    _check: Database = MemoryDatabase()
