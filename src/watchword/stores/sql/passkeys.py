"""The SQL passkey store (``stores/passkeys.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from watchword.domain.audit import AuditEvent
from watchword.domain.passkeys import Passkey, PasskeyChallenge
from watchword.stores.sql import tables as t
from watchword.stores.sql.database import insert_audit
from watchword.stores.sql.engine import guarded, write_transaction


def _passkey(row: Row[Any]) -> Passkey:
    return Passkey(
        id=row.id,
        user_id=row.user_id,
        credential_id=row.credential_id,
        public_key=base64url_to_bytes(row.public_key),
        sign_count=int(row.sign_count),
        name=row.name,
        transports=tuple(row.transports or ()),
        backed_up=bool(row.backed_up),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


def _challenge(row: Row[Any]) -> PasskeyChallenge:
    return PasskeyChallenge(
        challenge_hash=row.challenge_hash,
        purpose=row.purpose,
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class SqlPasskeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create_challenge(self, challenge: PasskeyChallenge) -> None:
        c = t.passkey_challenges.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(t.passkey_challenges).where(c.expires_at <= challenge.created_at)
            )
            await conn.execute(
                insert(t.passkey_challenges).values(
                    challenge_hash=challenge.challenge_hash,
                    purpose=challenge.purpose,
                    user_id=challenge.user_id,
                    created_at=challenge.created_at,
                    expires_at=challenge.expires_at,
                )
            )

    @guarded
    async def use_challenge(
        self, challenge_hash: str, purpose: str, now: datetime
    ) -> PasskeyChallenge | None:
        c = t.passkey_challenges.c
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.passkey_challenges)
                .where(
                    c.challenge_hash == challenge_hash,
                    c.purpose == purpose,
                    c.used_at.is_(None),
                    c.expires_at > now,
                )
                .values(used_at=now)
            )
            if done.rowcount != 1:
                return None
            row = (
                await conn.execute(
                    select(t.passkey_challenges).where(c.challenge_hash == challenge_hash)
                )
            ).one()
        return _challenge(row)

    @guarded
    async def add(self, passkey: Passkey, *, audit: Sequence[AuditEvent] = ()) -> bool:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.passkeys).values(
                        id=passkey.id,
                        user_id=passkey.user_id,
                        credential_id=passkey.credential_id,
                        public_key=bytes_to_base64url(passkey.public_key),
                        sign_count=passkey.sign_count,
                        name=passkey.name,
                        transports=list(passkey.transports),
                        backed_up=passkey.backed_up,
                        created_at=passkey.created_at,
                        last_used_at=passkey.last_used_at,
                    )
                )
                await insert_audit(conn, audit)
        except IntegrityError:
            return False
        return True

    @guarded
    async def list_for(self, user_id: str) -> list[Passkey]:
        c = t.passkeys.c
        query = select(t.passkeys).where(c.user_id == user_id).order_by(c.created_at, c.id)
        async with self._engine.connect() as conn:
            return [_passkey(row) for row in await conn.execute(query)]

    @guarded
    async def count_for(self, user_id: str) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(select(func.count()).where(t.passkeys.c.user_id == user_id))
        return int(count or 0)

    @guarded
    async def get_by_credential(self, credential_id: str) -> Passkey | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.passkeys).where(t.passkeys.c.credential_id == credential_id)
                )
            ).first()
        return _passkey(row) if row else None

    @guarded
    async def use(
        self,
        passkey_id: str,
        sign_count: int,
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        c = t.passkeys.c
        # A counter that moves forward, or an authenticator without one (0 stays 0).
        moved = c.sign_count < sign_count if sign_count > 0 else c.sign_count == 0
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                update(t.passkeys)
                .where(c.id == passkey_id, moved)
                .values(sign_count=sign_count, last_used_at=now)
            )
            if done.rowcount != 1:
                return False
            await insert_audit(conn, audit)
        return True

    @guarded
    async def rename(self, user_id: str, passkey_id: str, name: str) -> Passkey | None:
        c = t.passkeys.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(t.passkeys).where(c.id == passkey_id, c.user_id == user_id).values(name=name)
            )
            row = (
                await conn.execute(
                    select(t.passkeys).where(c.id == passkey_id, c.user_id == user_id)
                )
            ).first()
        return _passkey(row) if row else None

    @guarded
    async def remove(
        self, user_id: str, passkey_id: str, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        c = t.passkeys.c
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(
                delete(t.passkeys).where(c.id == passkey_id, c.user_id == user_id)
            )
            if done.rowcount != 1:
                return False
            await insert_audit(conn, audit)
        return True

    @guarded
    async def remove_all(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> int:
        async with write_transaction(self._engine) as conn:
            done = await conn.execute(delete(t.passkeys).where(t.passkeys.c.user_id == user_id))
            await insert_audit(conn, audit)
        return int(done.rowcount or 0)


if TYPE_CHECKING:
    from watchword.stores.passkeys import PasskeyStore

    _p: PasskeyStore = SqlPasskeyStore(None)  # type: ignore[arg-type]
