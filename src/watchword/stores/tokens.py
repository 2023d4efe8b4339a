"""The token store contracts: signing keys, refresh tokens, revoked token ids.

They live beside the foundation's stores on the same backend and keep its write semantics:
creation is insert-only, and a state change is a conditional update that never undoes a
newer one (a rotated refresh token never becomes active again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from watchword.domain.keys import StoredKey
from watchword.domain.tokens import RefreshToken
from watchword.stores.base import Database


class KeyStore(Protocol):
    async def all(self) -> list[StoredKey]:
        """Every stored key, oldest generation first."""
        ...

    async def add(self, key: StoredKey, now: datetime, *, origin: str) -> bool:
        """Make ``key`` the signing key if the newest stored generation is exactly
        ``key.generation - 1``: insert it, retire every other key at ``now`` and record a
        keys-changed control event, in one transaction. False (and no change) when another
        writer got that generation first, so concurrent first starts create one key."""
        ...

    async def delete_retired_before(self, cutoff: datetime) -> int:
        """Drop keys retired before ``cutoff`` (no token of theirs can still be valid)."""
        ...


class RefreshTokenStore(Protocol):
    async def create(self, token: RefreshToken) -> None:
        """Insert a new active token; raises on a collision."""
        ...

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...

    async def rotate(
        self, token_id: str, successor: RefreshToken, sealed_pair: str | None, now: datetime
    ) -> bool:
        """Atomically retire the active token ``token_id`` (keeping ``sealed_pair`` for the
        grace window) and insert ``successor``. Exactly one of several concurrent calls for
        the same token returns True; the others change nothing and return False."""
        ...

    async def forget_successors(self, rotated_before: datetime) -> int:
        """Drop the sealed successor pairs of tokens rotated before ``rotated_before``."""
        ...


class RevocationStore(Protocol):
    async def revoke_jti(
        self, jti: str, expires_at: datetime, now: datetime, *, origin: str
    ) -> None:
        """Record a revoked access token id (idempotent) and a token-revoked control event,
        in one transaction."""
        ...

    async def revoked_jtis(self, now: datetime) -> dict[str, datetime]:
        """Revoked ids whose tokens have not yet expired, with their expiry."""
        ...

    async def clear_expired(self, now: datetime) -> int: ...

    async def sessions_revoked_since(
        self, cutoff: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        """``(session id, revoked at, session expires at)`` of sessions revoked after
        ``cutoff``: a starting node learns the revocations its access tokens must honour."""
        ...

    async def control_floor(self) -> int | None:
        """The oldest id still in the control feed (None when it is empty)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenStores:
    keys: KeyStore
    refresh: RefreshTokenStore
    revocations: RevocationStore


def token_stores_for(db: Database) -> TokenStores:
    """The token stores on the same backend as ``db``."""
    from watchword.stores.memory import MemoryDatabase

    if isinstance(db, MemoryDatabase):
        from watchword.stores.memory_tokens import memory_token_stores

        return memory_token_stores(db)
    from watchword.stores.sql.database import SqlDatabase

    if isinstance(db, SqlDatabase):
        from watchword.stores.sql.tokens import sql_token_stores

        return sql_token_stores(db)
    engine = getattr(db, "engine", None)
    if engine is not None:
        from watchword.stores.sql.tokens import sql_token_stores_on

        return sql_token_stores_on(engine)
    raise TypeError(f"no token stores for {type(db).__name__}")
