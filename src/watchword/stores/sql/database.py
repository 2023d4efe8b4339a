"""The SQL stores: users, sessions, audit trail and control feed on one engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watchword.domain import events
from watchword.domain.audit import AuditEvent
from watchword.domain.errors import EmailTaken, SessionLimitReached
from watchword.domain.sessions import RevokeReason, Session
from watchword.domain.users import User
from watchword.stores.base import CONTROL_PAGE, ControlRecord, Database
from watchword.stores.sql import tables as t
from watchword.stores.sql.app_grants import queue_backchannel_logouts
from watchword.stores.sql.engine import guarded, make_engine, write_transaction


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        email=row.email,
        password_hash=row.password_hash,
        first_name=row.first_name,
        last_name=row.last_name,
        roles=tuple(row.roles or ()),
        disabled=bool(row.disabled),
        created_at=row.created_at,
        updated_at=row.updated_at,
        email_verified_at=row.email_verified_at,
    )


def _session(row: Row[Any]) -> Session:
    return Session(
        id=row.id,
        user_id=row.user_id,
        secret_hash=row.secret_hash,
        kind=row.kind,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        idle_timeout_seconds=row.idle_timeout_seconds,
        device_name=row.device_name,
        user_agent=row.user_agent,
        ip=row.ip,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


def _session_values(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "user_id": s.user_id,
        "secret_hash": s.secret_hash,
        "kind": s.kind,
        "created_at": s.created_at,
        "last_seen_at": s.last_seen_at,
        "expires_at": s.expires_at,
        "idle_timeout_seconds": s.idle_timeout_seconds,
        "device_name": s.device_name,
        "user_agent": s.user_agent,
        "ip": s.ip,
        "revoked_at": s.revoked_at,
        "revoked_reason": s.revoked_reason,
    }


async def record_control(
    conn: AsyncConnection, payloads: Sequence[dict[str, Any]], now: datetime, origin: str
) -> list[int]:
    ids: list[int] = []
    for payload in payloads:
        result = await conn.execute(
            insert(t.control_log)
            .values(at=now, origin=origin, payload=payload)
            .returning(t.control_log.c.id)
        )
        ids.append(int(result.scalar_one()))
    return ids


def revoked_payloads(sessions: Sequence[Session]) -> list[dict[str, Any]]:
    return [
        events.session_revoked(
            s.id, s.user_id, s.revoked_reason or "revoked", s.expires_at.timestamp()
        )
        for s in sessions
    ]


async def insert_user(conn: AsyncConnection, user: User) -> None:
    """Write a new user row inside the caller's transaction."""
    await conn.execute(
        insert(t.users).values(
            id=user.id,
            email=user.email,
            password_hash=user.password_hash,
            first_name=user.first_name,
            last_name=user.last_name,
            roles=list(user.roles),
            disabled=user.disabled,
            created_at=user.created_at,
            updated_at=user.updated_at,
            email_verified_at=user.email_verified_at,
        )
    )


async def insert_audit(conn: AsyncConnection, audit: Sequence[AuditEvent]) -> None:
    """Write audit rows inside the caller's transaction."""
    for event in audit:
        await conn.execute(
            insert(t.audit_events).values(
                type=event.type,
                at=event.at,
                user_id=event.user_id,
                session_id=event.session_id,
                actor_id=event.actor_id,
                ip=event.ip,
                user_agent=event.user_agent,
                details=event.details,
            )
        )


async def revoke_where(
    conn: AsyncConnection, condition: Any, reason: str, now: datetime, origin: str
) -> list[Session]:
    """Revoke the live sessions matching ``condition`` and record it in the control feed."""
    result = await conn.execute(
        update(t.sessions)
        .where(and_(condition, t.sessions.c.revoked_at.is_(None)))
        .values(revoked_at=now, revoked_reason=reason)
        .returning(*t.sessions.c)
    )
    revoked = [_session(row) for row in result]
    if revoked:
        await record_control(conn, revoked_payloads(revoked), now, origin)
        # The apps signed in through these sessions hear of it (back-channel logout outbox).
        await queue_backchannel_logouts(conn, revoked, now)
    return revoked


class SqlUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> User:
        try:
            async with write_transaction(self._engine) as conn:
                await insert_user(conn, user)
                await insert_audit(conn, audit)
        except IntegrityError as exc:
            raise EmailTaken() from exc
        return user

    @guarded
    async def get(self, user_id: str) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
        return _user(row) if row else None

    @guarded
    async def get_by_email(self, email: str) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.email == email))).first()
        return _user(row) if row else None

    @guarded
    async def page(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        query = (
            select(t.users).order_by(t.users.c.created_at, t.users.c.id).limit(limit).offset(offset)
        )
        async with self._engine.connect() as conn:
            return [_user(row) for row in await conn.execute(query)]

    @guarded
    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.users))).scalar_one())

    @guarded
    async def update(
        self, user_id: str, changes: Mapping[str, Any], now: datetime, *, origin: str
    ) -> User | None:
        values = dict(changes)
        if "roles" in values:
            values["roles"] = list(values["roles"])
        try:
            async with write_transaction(self._engine) as conn:
                row = (
                    await conn.execute(
                        update(t.users)
                        .where(t.users.c.id == user_id)
                        .values(**values, updated_at=now)
                        .returning(*t.users.c)
                    )
                ).first()
                if row is None:
                    return None
                user = _user(row)
                await record_control(
                    conn, [events.user_changed(user_id, disabled=user.disabled)], now, origin
                )
        except IntegrityError as exc:
            raise EmailTaken() from exc
        return user

    @guarded
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
        values = dict(changes or {})
        if "roles" in values:
            values["roles"] = list(values["roles"])
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.users)
                    .where(t.users.c.id == user_id)
                    .values(**values, disabled=disabled, updated_at=now)
                    .returning(*t.users.c)
                )
            ).first()
            if row is None:
                return None, []
            revoked: list[Session] = []
            if disabled:
                revoked = await revoke_where(
                    conn, t.sessions.c.user_id == user_id, RevokeReason.USER_DISABLED, now, origin
                )
            await record_control(
                conn, [events.user_changed(user_id, disabled=disabled)], now, origin
            )
            if audit is not None:
                await insert_audit(conn, audit(revoked))
        return _user(row), revoked

    @guarded
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
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.users)
                    .where(t.users.c.id == user_id)
                    .values(password_hash=password_hash, updated_at=now)
                    .returning(*t.users.c)
                )
            ).first()
            if row is None:
                return None, []
            condition = and_(t.sessions.c.user_id == user_id, t.sessions.c.expires_at > now)
            if keep_session_id is not None:
                condition = and_(condition, t.sessions.c.id != keep_session_id)
            revoked = await revoke_where(
                conn, condition, RevokeReason.PASSWORD_CHANGED, now, origin
            )
            await insert_audit(conn, audit(revoked))
        return _user(row), revoked

    @guarded
    async def delete(self, user_id: str, now: datetime, *, origin: str) -> list[Session]:
        async with write_transaction(self._engine) as conn:
            revoked = await revoke_where(
                conn, t.sessions.c.user_id == user_id, RevokeReason.USER_DISABLED, now, origin
            )
            result = await conn.execute(delete(t.users).where(t.users.c.id == user_id))
            if result.rowcount:
                await record_control(
                    conn, [events.user_changed(user_id, disabled=True, deleted=True)], now, origin
                )
        return revoked


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lock_user_rows = engine.dialect.name != "sqlite"

    @guarded
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
        async with write_transaction(self._engine) as conn:
            if self._lock_user_rows:
                # Serialises concurrent logins of one user across every node.
                await conn.execute(
                    select(t.users.c.id).where(t.users.c.id == session.user_id).with_for_update()
                )
            evicted: list[Session] = []
            if limit > 0:
                rows = await conn.execute(
                    select(t.sessions)
                    .where(
                        t.sessions.c.user_id == session.user_id,
                        t.sessions.c.revoked_at.is_(None),
                        t.sessions.c.expires_at > now,
                    )
                    .order_by(t.sessions.c.created_at, t.sessions.c.id)
                )
                # last_seen_at is written lazily: count a session as live for one touch
                # interval longer, so the limit errs towards fewer sessions, never more.
                grace = timedelta(seconds=grace_seconds)
                live = [s for s in map(_session, rows) if s.idle_expires_at() + grace > now]
                excess = len(live) - limit + 1
                if excess > 0:
                    if policy == "reject":
                        raise SessionLimitReached()
                    victims = [s.id for s in live[:excess]]
                    evicted = await revoke_where(
                        conn, t.sessions.c.id.in_(victims), RevokeReason.EVICTED, now, origin
                    )
            await conn.execute(insert(t.sessions).values(**_session_values(session)))
            if amr is not None:
                await conn.execute(
                    insert(t.session_auth).values(
                        session_id=session.id, auth_time=session.created_at, amr=list(amr)
                    )
                )
            await insert_audit(conn, audit)
        return evicted

    @guarded
    async def get(self, session_id: str) -> Session | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(t.sessions).where(t.sessions.c.id == session_id))
            ).first()
        return _session(row) if row else None

    @guarded
    async def get_by_secret_hash(self, secret_hash: str) -> Session | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.sessions).where(t.sessions.c.secret_hash == secret_hash)
                )
            ).first()
        return _session(row) if row else None

    @guarded
    async def list_live(self, user_id: str, now: datetime) -> list[Session]:
        query = (
            select(t.sessions)
            .where(
                t.sessions.c.user_id == user_id,
                t.sessions.c.revoked_at.is_(None),
                t.sessions.c.expires_at > now,
            )
            .order_by(t.sessions.c.created_at.desc(), t.sessions.c.id)
        )
        async with self._engine.connect() as conn:
            return [_session(row) for row in await conn.execute(query)]

    @guarded
    async def list_all_live(self, now: datetime, *, limit: int) -> list[Session]:
        query = (
            select(t.sessions)
            .where(t.sessions.c.revoked_at.is_(None), t.sessions.c.expires_at > now)
            .order_by(t.sessions.c.created_at.desc(), t.sessions.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_session(row) for row in await conn.execute(query)]

    @guarded
    async def touch(self, last_seen: Mapping[str, datetime]) -> None:
        if not last_seen:
            return
        async with write_transaction(self._engine) as conn:
            for session_id, seen in last_seen.items():
                await conn.execute(
                    update(t.sessions)
                    .where(
                        t.sessions.c.id == session_id,
                        t.sessions.c.revoked_at.is_(None),
                        t.sessions.c.last_seen_at < seen,
                    )
                    .values(last_seen_at=seen)
                )

    @guarded
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
        condition = t.sessions.c.id == session_id
        if owner_id is not None:
            condition = and_(condition, t.sessions.c.user_id == owner_id)
        async with write_transaction(self._engine) as conn:
            revoked = await revoke_where(conn, condition, reason, now, origin)
            if revoked and audit:
                await insert_audit(conn, audit)
        return revoked[0] if revoked else None

    @guarded
    async def revoke_all(
        self,
        user_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        except_session_id: str | None = None,
    ) -> list[Session]:
        condition = and_(t.sessions.c.user_id == user_id, t.sessions.c.expires_at > now)
        if except_session_id is not None:
            condition = and_(condition, t.sessions.c.id != except_session_id)
        async with write_transaction(self._engine) as conn:
            return await revoke_where(conn, condition, reason, now, origin)

    @guarded
    async def revoke_kind(
        self, kind: str, reason: str, now: datetime, *, origin: str
    ) -> list[Session]:
        condition = and_(t.sessions.c.kind == kind, t.sessions.c.expires_at > now)
        async with write_transaction(self._engine) as conn:
            return await revoke_where(conn, condition, reason, now, origin)

    @guarded
    async def clear_expired(self, now: datetime, *, keep_revoked_for: int) -> int:
        cutoff = now - timedelta(seconds=keep_revoked_for)
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.sessions).where(
                    or_(t.sessions.c.expires_at < cutoff, t.sessions.c.revoked_at < cutoff)
                )
            )
        return int(result.rowcount or 0)


class SqlAuditStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def append(self, event: AuditEvent) -> None:
        async with write_transaction(self._engine) as conn:
            await insert_audit(conn, [event])

    @staticmethod
    def _event(row: Row[Any]) -> AuditEvent:
        return AuditEvent(
            id=int(row.id),
            type=row.type,
            at=row.at,
            user_id=row.user_id,
            session_id=row.session_id,
            actor_id=row.actor_id,
            ip=row.ip,
            user_agent=row.user_agent,
            details=dict(row.details or {}),
        )

    @guarded
    async def for_user(
        self, user_id: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEvent]:
        query = select(t.audit_events).where(t.audit_events.c.user_id == user_id)
        if before_id is not None:
            query = query.where(t.audit_events.c.id < before_id)
        query = query.order_by(t.audit_events.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [self._event(row) for row in await conn.execute(query)]

    @guarded
    async def tail(self, *, limit: int = 50, after_id: int | None = None) -> list[AuditEvent]:
        async with self._engine.connect() as conn:
            if after_id is None:
                query = select(t.audit_events).order_by(t.audit_events.c.id.desc()).limit(limit)
                return [self._event(row) for row in reversed(list(await conn.execute(query)))]
            query = (
                select(t.audit_events)
                .where(t.audit_events.c.id > after_id)
                .order_by(t.audit_events.c.id)
                .limit(limit)
            )
            return [self._event(row) for row in await conn.execute(query)]


class SqlControlFeed:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def append(
        self, payloads: Sequence[dict[str, Any]], now: datetime, *, origin: str
    ) -> list[int]:
        async with write_transaction(self._engine) as conn:
            return await record_control(conn, payloads, now, origin)

    @guarded
    async def read_after(self, after_id: int, *, limit: int = CONTROL_PAGE) -> list[ControlRecord]:
        query = (
            select(t.control_log)
            .where(t.control_log.c.id > after_id)
            .order_by(t.control_log.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                ControlRecord(id=int(r.id), at=r.at, origin=r.origin, payload=dict(r.payload))
                for r in await conn.execute(query)
            ]

    @guarded
    async def last_id(self) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(func.max(t.control_log.c.id)))).scalar_one()
        return int(value or 0)

    @guarded
    async def clear_older_than(self, cutoff: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(delete(t.control_log).where(t.control_log.c.at < cutoff))
        return int(result.rowcount or 0)


class SqlDatabase:
    """All SQL stores on one engine (SQLite file by default, or PostgreSQL)."""

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, timeout=timeout)
        self.users = SqlUserStore(self.engine)
        self.sessions = SqlSessionStore(self.engine)
        self.audit = SqlAuditStore(self.engine)
        self.control = SqlControlFeed(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @guarded
    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def upgrade(self) -> None:
        from watchword.stores.sql.migrate import upgrade

        await guarded(upgrade)(self.engine)

    async def pending_migrations(self) -> set[str]:
        from watchword.stores.sql.migrate import pending

        return await guarded(pending)(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()


if TYPE_CHECKING:
    _check: Database = SqlDatabase("sqlite+aiosqlite://")
