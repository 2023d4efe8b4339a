"""SQL adapters of the app grant and consent stores (``stores/app_grants.py``).

A code is redeemed by one conditional ``UPDATE ... WHERE code_used_at IS NULL RETURNING`` in
a write transaction, as refresh rotation is: of two concurrent redemptions one sees it unused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from watchword.domain.app_grants import AppConsent, AppGrant
from watchword.domain.errors import NotFound
from watchword.domain.tokens import ACTIVE, REVOKED, RefreshToken
from watchword.stores.sql import tables as t
from watchword.stores.sql.engine import guarded, write_transaction

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
        query = (
            select(t.app_grants)
            .where(g.user_id == user_id, g.revoked_at.is_(None), g.code_used_at.is_not(None))
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
