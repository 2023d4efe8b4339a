"""In-process token stores with the same contracts as SQL, on a ``MemoryDatabase``."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from watchword.domain.keys import StoredKey
from watchword.domain.tokens import ACTIVE, ROTATED, RefreshToken, keys_changed, token_revoked
from watchword.stores.memory import MemoryDatabase
from watchword.stores.tokens import TokenStores


class MemoryKeyStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._rows: dict[str, StoredKey] = {}

    async def all(self) -> list[StoredKey]:
        return sorted(self._rows.values(), key=lambda k: k.generation)

    async def add(self, key: StoredKey, now: datetime, *, origin: str) -> bool:
        async with self._lock:
            newest = max((k.generation for k in self._rows.values()), default=0)
            if newest != key.generation - 1 or key.kid in self._rows:
                return False
            for kid, old in list(self._rows.items()):
                if old.retired_at is None:
                    self._rows[kid] = replace(old, retired_at=now)
            self._rows[key.kid] = replace(key, retired_at=None)
            self._db.control.record([keys_changed(key.kid)], now, origin)
        return True

    async def delete_retired_before(self, cutoff: datetime) -> int:
        doomed = [
            kid
            for kid, k in self._rows.items()
            if k.retired_at is not None and k.retired_at < cutoff
        ]
        for kid in doomed:
            del self._rows[kid]
        return len(doomed)


class MemoryRefreshTokenStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._rows: dict[str, RefreshToken] = {}

    def _live_rows(self) -> dict[str, RefreshToken]:
        # Tokens die with their session (ON DELETE CASCADE in SQL).
        for tid in [t for t, r in self._rows.items() if r.session_id not in self._db.session_rows]:
            del self._rows[tid]
        return self._rows

    async def create(self, token: RefreshToken) -> None:
        rows = self._live_rows()
        if token.session_id not in self._db.session_rows:
            raise KeyError(token.session_id)
        if token.id in rows or any(r.token_hash == token.token_hash for r in rows.values()):
            raise ValueError("refresh token collision")
        rows[token.id] = token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return next((r for r in self._live_rows().values() if r.token_hash == token_hash), None)

    async def rotate(
        self, token_id: str, successor: RefreshToken, sealed_pair: str | None, now: datetime
    ) -> bool:
        # No await between the check and the writes: atomic on the event loop.
        rows = self._live_rows()
        current = rows.get(token_id)
        if current is None or current.state != ACTIVE:
            return False
        rows[token_id] = replace(
            current, state=ROTATED, rotated_at=now, successor_sealed=sealed_pair
        )
        rows[successor.id] = successor
        return True

    async def forget_successors(self, rotated_before: datetime) -> int:
        count = 0
        rows = self._live_rows()
        for tid, row in list(rows.items()):
            if (
                row.successor_sealed is not None
                and row.rotated_at is not None
                and row.rotated_at < rotated_before
            ):
                rows[tid] = replace(row, successor_sealed=None)
                count += 1
        return count


class MemoryRevocationStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._jtis: dict[str, datetime] = {}

    async def revoke_jti(
        self, jti: str, expires_at: datetime, now: datetime, *, origin: str
    ) -> None:
        self._jtis.setdefault(jti, expires_at)
        self._db.control.record([token_revoked(jti, expires_at.timestamp())], now, origin)

    async def revoked_jtis(self, now: datetime) -> dict[str, datetime]:
        return {jti: exp for jti, exp in self._jtis.items() if exp > now}

    async def clear_expired(self, now: datetime) -> int:
        doomed = [jti for jti, exp in self._jtis.items() if exp <= now]
        for jti in doomed:
            del self._jtis[jti]
        return len(doomed)

    async def sessions_revoked_since(
        self, cutoff: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        return [
            (s.id, s.revoked_at, s.expires_at)
            for s in self._db.session_rows.values()
            if s.revoked_at is not None and s.revoked_at > cutoff
        ]

    async def control_floor(self) -> int | None:
        records = await self._db.control.read_after(0, limit=1)
        return records[0].id if records else None


def memory_token_stores(db: MemoryDatabase) -> TokenStores:
    return TokenStores(
        keys=MemoryKeyStore(db),
        refresh=MemoryRefreshTokenStore(db),
        revocations=MemoryRevocationStore(db),
    )


if TYPE_CHECKING:
    from watchword.stores.tokens import KeyStore, RefreshTokenStore, RevocationStore

    _check_keys: KeyStore = MemoryKeyStore(MemoryDatabase())
    _check_refresh: RefreshTokenStore = MemoryRefreshTokenStore(MemoryDatabase())
    _check_revocations: RevocationStore = MemoryRevocationStore(MemoryDatabase())
