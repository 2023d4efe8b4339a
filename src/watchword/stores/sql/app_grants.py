"""SQL adapters of the app grant and consent stores (``stores/app_grants.py``).

A code is redeemed by one conditional ``UPDATE ... WHERE code_used_at IS NULL RETURNING`` in
a write transaction, as refresh rotation is: of two concurrent redemptions one sees it unused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Row, and_, delete, exists, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watchword.domain.app_grants import AppConsent, AppGrant, PendingLogout
from watchword.domain.errors import NotFound
from watchword.domain.sessions import Session
from watchword.domain.tokens import ACTIVE, REVOKED, RefreshToken
from watchword.stores.sql import tables as t
from watchword.stores.sql.engine import after_commit, guarded, write_transaction

g = t.app_grants.c


def _grant(row: Row[Any]) -> AppGrant:
    return AppGrant(
        id=row.id,
        code_hash=row.code_hash,
        client_id=row.client_id,
        user_id=row.user_id,
        session_id=row.session_id,
        redirect_uri=row.redirect_uri,
        scopes=frozenset(row.scopes or ()),
        nonce=row.nonce,
        code_challenge=row.code_challenge,
        created_at=row.created_at,
        code_expires_at=row.code_expires_at,
        code_used_at=row.code_used_at,
        revoked_at=row.revoked_at,
        access_tokens=tuple((str(j), float(e)) for j, e in row.access_tokens or ()),
    )


def _consent(row: Row[Any]) -> AppConsent:
    return AppConsent(
        user_id=row.user_id,
        client_id=row.client_id,
        scopes=frozenset(row.scopes or ()),
        created_at=row.created_at,
    )


class SqlAppGrantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, grant: AppGrant) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.app_grants).values(
                        id=grant.id,
                        code_hash=grant.code_hash,
                        client_id=grant.client_id,
                        user_id=grant.user_id,
                        session_id=grant.session_id,
                        redirect_uri=grant.redirect_uri,
                        scopes=sorted(grant.scopes),
                        nonce=grant.nonce,
                        code_challenge=grant.code_challenge,
                        created_at=grant.created_at,
                        code_expires_at=grant.code_expires_at,
                        code_used_at=None,
                        revoked_at=None,
                        access_tokens=[],
                    )
                )
        except IntegrityError as exc:
            raise NotFound("The session or the client no longer exists.") from exc

    @guarded
    async def get(self, grant_id: str) -> AppGrant | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.app_grants).where(g.id == grant_id))).first()
        return _grant(row) if row else None

    @guarded
    async def get_by_code(self, code_hash: str) -> AppGrant | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.app_grants).where(g.code_hash == code_hash))).first()
        return _grant(row) if row else None

    @guarded
    async def redeem(self, grant_id: str, now: datetime) -> bool:
        async with write_transaction(self._engine) as conn:
            won = (
                await conn.execute(
                    update(t.app_grants)
                    .where(g.id == grant_id, g.code_used_at.is_(None), g.revoked_at.is_(None))
                    .values(code_used_at=now)
                    .returning(g.id)
                )
            ).first()
        return won is not None

    @guarded
    async def record_issued(
        self,
        grant_id: str,
        jti: str,
        expires_at: float,
        now: datetime,
        refresh: RefreshToken | None = None,
    ) -> bool:
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    select(g.access_tokens).where(g.id == grant_id, g.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return False
            live = [[j, e] for j, e in row.access_tokens or () if float(e) > now.timestamp()]
            await conn.execute(
                update(t.app_grants)
                .where(g.id == grant_id)
                .values(access_tokens=[*live, [jti, expires_at]])
            )
            if refresh is not None:
                await conn.execute(
                    insert(t.refresh_tokens).values(
                        id=refresh.id,
                        session_id=refresh.session_id,
                        token_hash=refresh.token_hash,
                        state=refresh.state,
                        created_at=refresh.created_at,
                        rotated_at=None,
                        successor_sealed=None,
                        grant_id=grant_id,
                    )
                )
        return True

    @guarded
    async def revoke(self, grant_id: str, now: datetime) -> AppGrant | None:
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.app_grants)
                    .where(g.id == grant_id, g.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*t.app_grants.c)
                )
            ).first()
            if row is None:
                return None
            await conn.execute(
                update(t.refresh_tokens)
                .where(t.refresh_tokens.c.grant_id == grant_id, t.refresh_tokens.c.state == ACTIVE)
                .values(state=REVOKED)
            )
        return _grant(row)

    @guarded
    async def for_user(self, user_id: str) -> list[AppGrant]:
        s = t.sessions.c
        query = (
            select(t.app_grants)
            .select_from(t.app_grants.join(t.sessions, s.id == g.session_id))
            .where(
                g.user_id == user_id,
                g.revoked_at.is_(None),
                g.code_used_at.is_not(None),
                s.revoked_at.is_(None),  # a grant ends with its session
            )
            .order_by(g.created_at.desc())
        )
        async with self._engine.connect() as conn:
            return [_grant(row) for row in await conn.execute(query)]

    @guarded
    async def for_session(self, session_id: str) -> list[AppGrant]:
        query = select(t.app_grants).where(g.session_id == session_id, g.code_used_at.is_not(None))
        async with self._engine.connect() as conn:
            return [_grant(row) for row in await conn.execute(query)]

    @guarded
    async def end_with_expired_sessions(
        self, now: datetime, idle_margin: timedelta, *, limit: int = 200
    ) -> list[AppGrant]:
        s = t.sessions.c
        c = t.oauth_clients.c
        o = t.logout_outbox.c
        query = (
            select(
                t.app_grants,
                s.expires_at.label("session_expires_at"),
                s.last_seen_at.label("session_seen_at"),
                s.idle_timeout_seconds.label("session_idle_seconds"),
                c.backchannel_logout_uri.label("logout_uri"),
            )
            .select_from(
                t.app_grants.join(t.sessions, s.id == g.session_id).join(
                    t.oauth_clients, c.id == g.client_id
                )
            )
            .where(
                g.revoked_at.is_(None),
                g.code_used_at.is_not(None),
                s.revoked_at.is_(None),
                # Coarse in SQL (each session has its own idle timeout); exact below.
                or_(s.expires_at <= now, s.last_seen_at <= now - idle_margin),
            )
            .order_by(g.created_at)
            .limit(limit)
        )
        ended: list[AppGrant] = []
        async with write_transaction(self._engine) as conn:
            for row in (await conn.execute(query)).all():
                idle_end = row.session_seen_at + timedelta(seconds=row.session_idle_seconds)
                if row.session_expires_at > now and idle_end + idle_margin > now:
                    continue  # idle, but maybe only in a last-seen write not yet made
                revoked = (
                    await conn.execute(
                        update(t.app_grants)
                        .where(g.id == row.id, g.revoked_at.is_(None))
                        .values(revoked_at=now)
                        .returning(*t.app_grants.c)
                    )
                ).first()
                if revoked is None:
                    continue
                await conn.execute(
                    update(t.refresh_tokens)
                    .where(
                        t.refresh_tokens.c.grant_id == row.id,
                        t.refresh_tokens.c.state == ACTIVE,
                    )
                    .values(state=REVOKED)
                )
                ended.append(_grant(revoked))
                if row.logout_uri is None:
                    continue
                already = await conn.execute(
                    select(
                        exists().where(o.client_id == row.client_id, o.session_id == row.session_id)
                    )
                )
                if already.scalar():
                    continue  # one logout token per app and session
                await _queue_logout(
                    conn, row.client_id, row.session_id, row.user_id, row.logout_uri, now
                )
        return ended

    @guarded
    async def clear_expired(self, code_before: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.app_grants).where(
                    and_(g.code_used_at.is_(None), g.code_expires_at < code_before)
                )
            )
        return int(result.rowcount or 0)


class SqlAppConsentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def get(self, user_id: str, client_id: str) -> AppConsent | None:
        c = t.app_consents.c
        query = select(t.app_consents).where(c.user_id == user_id, c.client_id == client_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _consent(row) if row else None

    @guarded
    async def save(self, consent: AppConsent) -> None:
        c = t.app_consents.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(t.app_consents).where(
                    c.user_id == consent.user_id, c.client_id == consent.client_id
                )
            )
            await conn.execute(
                insert(t.app_consents).values(
                    user_id=consent.user_id,
                    client_id=consent.client_id,
                    scopes=sorted(consent.scopes),
                    created_at=consent.created_at,
                )
            )

    @guarded
    async def for_user(self, user_id: str) -> list[AppConsent]:
        c = t.app_consents.c
        query = select(t.app_consents).where(c.user_id == user_id).order_by(c.created_at.desc())
        async with self._engine.connect() as conn:
            return [_consent(row) for row in await conn.execute(query)]

    @guarded
    async def delete(self, user_id: str, client_id: str) -> bool:
        c = t.app_consents.c
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.app_consents).where(c.user_id == user_id, c.client_id == client_id)
            )
        return bool(result.rowcount)


def _logout(row: Row[Any]) -> PendingLogout:
    return PendingLogout(
        id=row.id,
        client_id=row.client_id,
        session_id=row.session_id,
        user_id=row.user_id,
        uri=row.uri,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        attempts=int(row.attempts or 0),
        sent_at=row.sent_at,
        last_error=row.last_error,
    )


async def queue_backchannel_logouts(
    conn: AsyncConnection, sessions: Sequence[Session], now: datetime
) -> None:
    """Inside the transaction that ends ``sessions``: one outbox row per app that signed in
    through one of them and registered a back-channel logout URI."""
    if not sessions:
        return
    c = t.oauth_clients.c
    query = (
        select(g.client_id, g.session_id, g.user_id, c.backchannel_logout_uri)
        .distinct()
        .select_from(t.app_grants.join(t.oauth_clients, c.id == g.client_id))
        .where(
            g.session_id.in_([s.id for s in sessions]),
            g.code_used_at.is_not(None),
            c.backchannel_logout_uri.is_not(None),
        )
    )
    rows = (await conn.execute(query)).all()
    for row in rows:
        await _queue_logout(
            conn, row.client_id, row.session_id, row.user_id, row.backchannel_logout_uri, now
        )
    if rows:
        _announce_queued(conn)


# Per engine (one node's database), whom to tell once a transaction that queued logouts
# has committed: the sender on this node delivers them at once instead of at its next poll.
_queued_listeners: WeakKeyDictionary[Engine, list[Callable[[], None]]] = WeakKeyDictionary()


def _announce_queued(conn: AsyncConnection) -> None:
    for listener in _queued_listeners.get(conn.sync_engine, ()):
        after_commit(conn, listener)


async def _queue_logout(
    conn: AsyncConnection, client_id: str, session_id: str, user_id: str, uri: str, now: datetime
) -> None:
    """One logout token to deliver, due at once."""
    await conn.execute(
        insert(t.logout_outbox).values(
            id=str(uuid.uuid4()),
            client_id=client_id,
            session_id=session_id,
            user_id=user_id,
            uri=uri,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


class SqlLogoutOutbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def on_queued(self, callback: Callable[[], None]) -> None:
        _queued_listeners.setdefault(self._engine.sync_engine, []).append(callback)

    @guarded
    async def claim_due(
        self, now: datetime, lease_until: datetime, *, limit: int
    ) -> list[PendingLogout]:
        o = t.logout_outbox.c
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.logout_outbox)
                    .where(o.sent_at.is_(None), o.next_attempt_at <= now)
                    .order_by(o.next_attempt_at, o.created_at)
                    .limit(limit)
                )
            ).all()
        claimed: list[PendingLogout] = []
        for row in rows:
            async with write_transaction(self._engine) as conn:
                result = await conn.execute(
                    update(t.logout_outbox)
                    .where(
                        o.id == row.id,
                        o.sent_at.is_(None),
                        o.next_attempt_at == row.next_attempt_at,
                    )
                    .values(next_attempt_at=lease_until)
                )
            if result.rowcount:
                claimed.append(_logout(row))
        return claimed

    @guarded
    async def mark_sent(self, logout_id: str, now: datetime) -> None:
        o = t.logout_outbox.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(t.logout_outbox)
                .where(o.id == logout_id)
                .values(sent_at=now, attempts=o.attempts + 1, last_error=None)
            )

    @guarded
    async def mark_failed(
        self, logout_id: str, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        o = t.logout_outbox.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(t.logout_outbox)
                .where(o.id == logout_id, o.sent_at.is_(None))
                .values(attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:500])
            )

    @guarded
    async def page(self, *, limit: int = 50, unsent_only: bool = False) -> list[PendingLogout]:
        o = t.logout_outbox.c
        query = select(t.logout_outbox)
        if unsent_only:
            query = query.where(o.sent_at.is_(None))
        query = query.order_by(o.created_at.desc(), o.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_logout(row) for row in await conn.execute(query)]

    @guarded
    async def clear_sent(self, sent_before: datetime) -> int:
        o = t.logout_outbox.c
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.logout_outbox).where(o.sent_at.is_not(None), o.sent_at < sent_before)
            )
        return int(result.rowcount or 0)
