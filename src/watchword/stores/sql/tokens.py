"""The SQL token stores: signing keys, refresh tokens and revoked token ids.

Refresh rotation is one conditional ``UPDATE ... WHERE id = ? AND state = 'active'
RETURNING`` in a write transaction (BEGIN IMMEDIATE on SQLite, a row lock on PostgreSQL):
of several concurrent rotations of one token exactly one sees the row still active.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from watchword.domain.keys import StoredKey
from watchword.domain.tokens import ACTIVE, ROTATED, RefreshToken, keys_changed, token_revoked
from watchword.stores.sql import tables as t
from watchword.stores.sql.database import SqlDatabase, record_control
from watchword.stores.sql.engine import guarded, write_transaction
from watchword.stores.tokens import TokenStores


def _key(row: Row[Any]) -> StoredKey:
    return StoredKey(
        kid=row.kid,
        algorithm=row.algorithm,
        generation=int(row.generation),
        private_sealed=row.private_sealed,
        public_jwk=dict(row.public_jwk),
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def _refresh(row: Row[Any]) -> RefreshToken:
    return RefreshToken(
        id=row.id,
        session_id=row.session_id,
        token_hash=row.token_hash,
        created_at=row.created_at,
        state=row.state,
        rotated_at=row.rotated_at,
        successor_sealed=row.successor_sealed,
        grant_id=row.grant_id,
    )


def _refresh_values(token: RefreshToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "session_id": token.session_id,
        "token_hash": token.token_hash,
        "state": token.state,
        "created_at": token.created_at,
        "rotated_at": token.rotated_at,
        "successor_sealed": token.successor_sealed,
        "grant_id": token.grant_id,
    }


class SqlKeyStore:
    def __init__(self, engine: AsyncEngine, table: Table = t.token_keys) -> None:
        # ``table``: the access-token keys, or the RS256 ID-token keys (same shape).
        self._engine = engine
        self._table = table

    @guarded
    async def all(self) -> list[StoredKey]:
        query = select(self._table).order_by(self._table.c.generation)
        async with self._engine.connect() as conn:
            return [_key(row) for row in await conn.execute(query)]

    @guarded
    async def add(self, key: StoredKey, now: datetime, *, origin: str) -> bool:
        try:
            async with write_transaction(self._engine) as conn:
                newest = (
                    await conn.execute(select(func.max(self._table.c.generation)))
                ).scalar_one()
                if int(newest or 0) != key.generation - 1:
                    return False
                await conn.execute(
                    update(self._table)
                    .where(self._table.c.retired_at.is_(None))
                    .values(retired_at=now)
                )
                await conn.execute(
                    insert(self._table).values(
                        kid=key.kid,
                        generation=key.generation,
                        algorithm=key.algorithm,
                        private_sealed=key.private_sealed,
                        public_jwk=key.public_jwk,
                        created_at=key.created_at,
                        retired_at=None,
                    )
                )
                await record_control(conn, [keys_changed(key.kid)], now, origin)
        except IntegrityError:
            # A concurrent writer inserted this generation first (PostgreSQL waits on the
            # unique index, then fails here): that writer's key wins.
            return False
        return True

    @guarded
    async def delete_retired_before(self, cutoff: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(self._table).where(self._table.c.retired_at < cutoff)
            )
        return int(result.rowcount or 0)


class SqlRefreshTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, token: RefreshToken) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(insert(t.refresh_tokens).values(**_refresh_values(token)))

    @guarded
    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        query = select(t.refresh_tokens).where(t.refresh_tokens.c.token_hash == token_hash)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _refresh(row) if row else None

    @guarded
    async def rotate(
        self, token_id: str, successor: RefreshToken, sealed_pair: str | None, now: datetime
    ) -> bool:
        async with write_transaction(self._engine) as conn:
            won = (
                await conn.execute(
                    update(t.refresh_tokens)
                    .where(t.refresh_tokens.c.id == token_id, t.refresh_tokens.c.state == ACTIVE)
                    .values(state=ROTATED, rotated_at=now, successor_sealed=sealed_pair)
                    .returning(t.refresh_tokens.c.id)
                )
            ).first()
            if won is None:
                return False
            await conn.execute(insert(t.refresh_tokens).values(**_refresh_values(successor)))
        return True

    @guarded
    async def forget_successors(self, rotated_before: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                update(t.refresh_tokens)
                .where(
                    t.refresh_tokens.c.successor_sealed.is_not(None),
                    t.refresh_tokens.c.rotated_at < rotated_before,
                )
                .values(successor_sealed=None)
            )
        return int(result.rowcount or 0)


class SqlRevocationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def revoke_jti(
        self, jti: str, expires_at: datetime, now: datetime, *, origin: str
    ) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                exists = (
                    await conn.execute(
                        select(t.revoked_tokens.c.jti).where(t.revoked_tokens.c.jti == jti)
                    )
                ).first()
                if exists is None:
                    await conn.execute(
                        insert(t.revoked_tokens).values(
                            jti=jti, expires_at=expires_at, revoked_at=now
                        )
                    )
                payload = token_revoked(jti, expires_at.timestamp())
                await record_control(conn, [payload], now, origin)
        except IntegrityError:
            # A concurrent revocation of the same id committed first, with its own event.
            return

    @guarded
    async def revoked_jtis(self, now: datetime) -> dict[str, datetime]:
        query = select(t.revoked_tokens.c.jti, t.revoked_tokens.c.expires_at).where(
            t.revoked_tokens.c.expires_at > now
        )
        async with self._engine.connect() as conn:
            return {row.jti: row.expires_at for row in await conn.execute(query)}

    @guarded
    async def clear_expired(self, now: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.revoked_tokens).where(t.revoked_tokens.c.expires_at <= now)
            )
        return int(result.rowcount or 0)

    @guarded
    async def sessions_revoked_since(
        self, cutoff: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        query = select(t.sessions.c.id, t.sessions.c.revoked_at, t.sessions.c.expires_at).where(
            t.sessions.c.revoked_at > cutoff
        )
        async with self._engine.connect() as conn:
            return [(row.id, row.revoked_at, row.expires_at) for row in await conn.execute(query)]

    @guarded
    async def control_floor(self) -> int | None:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(func.min(t.control_log.c.id)))).scalar_one()
        return int(value) if value is not None else None


def sql_token_stores_on(engine: AsyncEngine) -> TokenStores:
    return TokenStores(
        keys=SqlKeyStore(engine),
        refresh=SqlRefreshTokenStore(engine),
        revocations=SqlRevocationStore(engine),
    )


def sql_token_stores(db: SqlDatabase) -> TokenStores:
    return sql_token_stores_on(db.engine)


if TYPE_CHECKING:
    from watchword.stores.tokens import KeyStore, RefreshTokenStore, RevocationStore

    _check_keys: KeyStore = SqlKeyStore(SqlDatabase("sqlite+aiosqlite://").engine)
    _check_refresh: RefreshTokenStore = SqlRefreshTokenStore(
        SqlDatabase("sqlite+aiosqlite://").engine
    )
    _check_revocations: RevocationStore = SqlRevocationStore(
        SqlDatabase("sqlite+aiosqlite://").engine
    )
