"""In-process machine-credential stores with the same contracts as SQL (``stores/machines.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from watchword.domain.apikeys import ApiKey, credential_revoked
from watchword.domain.clients import OAuthClient, OpaqueToken, client_changed
from watchword.domain.errors import Conflict, NotFound
from watchword.domain.signatures import SigningKey

if TYPE_CHECKING:
    from watchword.stores.machines import MachineStores

Recorder = Callable[[Sequence[dict[str, Any]], datetime, str], object]


def _ignore(_payloads: Sequence[dict[str, Any]], _now: datetime, _origin: str) -> None:
    return None


Key = TypeVar("Key", ApiKey, SigningKey)


class _MemoryKeyRows(Generic[Key]):
    """What both kinds of user-owned key share: listing, revoking, coalesced last use."""

    kind: ClassVar[str]  # the credential kind in the control feed

    def __init__(self, record: Recorder) -> None:
        self._record = record
        self.rows: dict[str, Key] = {}

    def _feed_id(self, key: Key) -> str:
        """The id other nodes' caches know the key by."""
        return key.id

    async def get(self, key_id: str) -> Key | None:
        return self.rows.get(key_id)

    async def list_for_user(self, user_id: str) -> list[Key]:
        keys = [k for k in self.rows.values() if k.user_id == user_id and k.revoked_at is None]
        return sorted(keys, key=lambda k: (k.created_at, k.id), reverse=True)

    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> Key | None:
        key = self.rows.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        if user_id is not None and key.user_id != user_id:
            return None
        key = replace(key, revoked_at=now)
        self.rows[key_id] = key
        self._record(
            [
                credential_revoked(
                    self.kind,
                    self._feed_id(key),
                    key.user_id,
                    # the row id too, when the feed names the key by another id (as SQL does)
                    key_id=key.id if self._feed_id(key) != key.id else None,
                )
            ],
            now,
            origin,
        )
        return key

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        for key_id, used in last_used.items():
            key = self.rows.get(key_id)
            if key is not None and (key.last_used_at is None or key.last_used_at < used):
                self.rows[key_id] = replace(key, last_used_at=used)


class MemoryApiKeyStore(_MemoryKeyRows[ApiKey]):
    kind = "api_key"

    def _feed_id(self, key: ApiKey) -> str:
        return key.public_id  # API-key caches are keyed by the public id

    async def create(self, key: ApiKey) -> None:
        if key.id in self.rows or any(k.public_id == key.public_id for k in self.rows.values()):
            raise Conflict("The API key could not be stored (duplicate id or no owner).")
        self.rows[key.id] = key

    async def get_by_public_id(self, public_id: str) -> ApiKey | None:
        return next((k for k in self.rows.values() if k.public_id == public_id), None)


class MemorySigningKeyStore(_MemoryKeyRows[SigningKey]):
    kind = "signing_key"

    async def create(self, key: SigningKey) -> None:
        if key.id in self.rows:
            raise Conflict("The signing key could not be stored (duplicate id or no owner).")
        self.rows[key.id] = key


class MemoryClientStore:
    def __init__(self, record: Recorder, tokens: MemoryOpaqueTokenStore) -> None:
        self._record = record
        self._tokens = tokens
        self.rows: dict[str, OAuthClient] = {}

    async def create(self, client: OAuthClient) -> None:
        if client.id in self.rows:
            raise Conflict("A client with this id already exists.")
        self.rows[client.id] = client

    async def get(self, client_id: str) -> OAuthClient | None:
        return self.rows.get(client_id)

    async def page(self, *, limit: int = 100, offset: int = 0) -> list[OAuthClient]:
        ordered = sorted(self.rows.values(), key=lambda c: (c.created_at, c.id))
        return ordered[offset : offset + limit]

    async def set_disabled(
        self, client_id: str, disabled: bool, now: datetime, *, origin: str
    ) -> OAuthClient | None:
        client = self.rows.get(client_id)
        if client is None:
            return None
        client = replace(client, disabled=disabled)
        self.rows[client_id] = client
        if disabled:
            for token_id, token in list(self._tokens.rows.items()):
                if token.client_id == client_id and token.revoked_at is None:
                    self._tokens.rows[token_id] = replace(token, revoked_at=now)
        self._record([client_changed(client_id, disabled=disabled)], now, origin)
        return client

    async def set_secret(self, client_id: str, secret_hash: str) -> OAuthClient | None:
        client = self.rows.get(client_id)
        if client is None:
            return None
        client = self.rows[client_id] = replace(client, secret_hash=secret_hash)
        return client


class MemoryOpaqueTokenStore:
    def __init__(self, record: Recorder) -> None:
        self._record = record
        self.rows: dict[str, OpaqueToken] = {}
        self.clients: MemoryClientStore | None = None

    async def create(self, token: OpaqueToken) -> None:
        if self.clients is not None and token.client_id not in self.clients.rows:
            raise NotFound("No such client.")
        if token.id in self.rows:
            raise Conflict("Duplicate token id.")
        self.rows[token.id] = token

    async def get_by_hash(self, token_hash: str) -> OpaqueToken | None:
        return next((t for t in self.rows.values() if t.token_hash == token_hash), None)

    async def revoke(self, token_id: str, now: datetime, *, origin: str) -> OpaqueToken | None:
        token = self.rows.get(token_id)
        if token is None or token.revoked_at is not None:
            return None
        token = replace(token, revoked_at=now)
        self.rows[token_id] = token
        self._record([credential_revoked("opaque_token", token.token_hash, None)], now, origin)
        return token

    async def clear_expired(self, now: datetime) -> int:
        gone = [tid for tid, t in self.rows.items() if t.expires_at < now]
        for tid in gone:
            del self.rows[tid]
        return len(gone)


class MemoryMachineStores:
    """``record`` appends to a control feed (``MemoryControlFeed.record``) when there is one."""

    def __init__(self, record: Recorder | None = None) -> None:
        rec = record or _ignore
        self.api_keys = MemoryApiKeyStore(rec)
        self.signing_keys = MemorySigningKeyStore(rec)
        self.opaque_tokens = MemoryOpaqueTokenStore(rec)
        self.clients = MemoryClientStore(rec, self.opaque_tokens)
        self.opaque_tokens.clients = self.clients


if TYPE_CHECKING:
    _check: MachineStores = MemoryMachineStores()
