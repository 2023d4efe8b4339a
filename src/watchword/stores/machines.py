"""Store contracts for machine credentials: API keys, signing keys, OAuth2 clients and their
opaque access tokens. Adapters: ``stores/sql/machines.py`` and ``stores/memory_machines.py``.

Every revocation is recorded in the control feed in the same transaction (a
``credential.revoked`` event), so every node and the CLI drop the credential from their caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from watchword.domain.apikeys import ApiKey
from watchword.domain.clients import OAuthClient, OpaqueToken
from watchword.domain.signatures import SigningKey


class ApiKeyStore(Protocol):
    async def create(self, key: ApiKey) -> None:
        """Insert-only; the owner must exist."""
        ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def get_by_public_id(self, public_id: str) -> ApiKey | None: ...

    async def list_for_user(self, user_id: str) -> list[ApiKey]:
        """Unrevoked keys of the user, newest first."""
        ...

    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> ApiKey | None:
        """Revoke an unrevoked key (of ``user_id`` when given); None if there is none."""
        ...

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Move ``last_used_at`` forward for many keys at once (coalesced writes)."""
        ...


class SigningKeyStore(Protocol):
    async def create(self, key: SigningKey) -> None: ...

    async def get(self, key_id: str) -> SigningKey | None: ...

    async def list_for_user(self, user_id: str) -> list[SigningKey]: ...

    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> SigningKey | None: ...

    async def touch(self, last_used: Mapping[str, datetime]) -> None: ...


class ClientStore(Protocol):
    async def create(self, client: OAuthClient) -> None: ...

    async def get(self, client_id: str) -> OAuthClient | None: ...

    async def page(self, *, limit: int = 100, offset: int = 0) -> list[OAuthClient]: ...

    async def set_disabled(
        self, client_id: str, disabled: bool, now: datetime, *, origin: str
    ) -> OAuthClient | None:
        """Disable (or enable) a client; disabling also revokes its opaque tokens."""
        ...

    async def set_secret(self, client_id: str, secret_hash: str) -> OAuthClient | None:
        """Replace the client's secret hash (the old secret stops working at once); None if
        there is no such client."""
        ...


class OpaqueTokenStore(Protocol):
    async def create(self, token: OpaqueToken) -> None: ...

    async def get_by_hash(self, token_hash: str) -> OpaqueToken | None: ...

    async def revoke(self, token_id: str, now: datetime, *, origin: str) -> OpaqueToken | None:
        """Mark revoked (never delete early: a deleted hash could come back)."""
        ...

    async def clear_expired(self, now: datetime) -> int: ...


class MachineStores(Protocol):
    @property
    def api_keys(self) -> ApiKeyStore: ...

    @property
    def signing_keys(self) -> SigningKeyStore: ...

    @property
    def clients(self) -> ClientStore: ...

    @property
    def opaque_tokens(self) -> OpaqueTokenStore: ...


def machine_stores_for(db: object) -> MachineStores:
    """The machine-credential stores on the same backend as ``db``."""
    from watchword.stores.memory import MemoryDatabase

    if isinstance(db, MemoryDatabase):
        from watchword.stores.memory_machines import MemoryMachineStores

        return MemoryMachineStores(db.control.record)
    engine = getattr(db, "engine", None)  # SqlDatabase, or a cache layer in front of it
    if engine is not None:
        from watchword.stores.sql.machines import SqlMachineStores

        return SqlMachineStores(engine)
    raise TypeError(f"no machine-credential stores for {type(db).__name__}")
