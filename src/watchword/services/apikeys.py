"""API keys as a service: create (shown once), list, revoke, and the hot-path authentication.

The hot path is a SHA-256 and a dict hit, like the session cookie: a bounded cache keyed by the
key's public id holds the row, its owner and the ready principal. Revocations, role changes and
disabled users reach the cache through control events (bus at once, control feed within a poll).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from watchword.domain.apikeys import (
    ApiKey,
    new_api_key,
    parse_api_key,
)
from watchword.domain.audit import AuditType
from watchword.domain.clock import sha256_hex
from watchword.domain.errors import (
    InvalidCredential,
    InvalidInput,
)
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE
from watchword.domain.users import User
from watchword.services.context import RequestContext
from watchword.services.credential_guard import (
    ContextSource,
)
from watchword.services.owned_keys import OwnedKeyService
from watchword.stores.machines import ApiKeyStore

log = logging.getLogger("watchword.apikeys")

MAX_EXPIRES_IN = 5 * 365 * 86400


@dataclass(frozen=True, slots=True)
class CachedKey:
    key: ApiKey
    user: User
    principal: Principal


def _refusal(entry: CachedKey, key_hash: str, now: datetime) -> tuple[str, str] | None:
    """Why a cached key refuses this secret now (the audit reason and the message), if it
    does."""
    key = entry.key
    if not key.matches(key_hash):
        return "wrong_secret", "The API key is not valid."
    if key.revoked_at is not None:
        return "revoked", "The API key has been revoked."
    if key.is_expired(now):
        return "expired", "The API key has expired."
    if entry.user.disabled:
        return "account_disabled", "The account is disabled."
    return None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: ApiKey
    secret: str  # the full key, shown once


class ApiKeyService(OwnedKeyService[ApiKey, CachedKey]):
    kind = "api_key"
    noun = "API key"

    def __init__(self, *, store: ApiKeyStore, **shared: Any) -> None:
        super().__init__(store=store, **shared)
        self._store = store

    def _cache_id(self, key: ApiKey) -> str:
        return key.public_id

    def _audit_details(self, key: ApiKey) -> dict[str, Any]:
        return {"prefix": key.prefix}

    # -- management -----------------------------------------------------------------------

    async def create(
        self,
        owner: User,
        *,
        name: str,
        scopes: str | list[str],
        grantable: frozenset[str],
        ctx: RequestContext,
        expires_in: int | None = None,
        actor_id: str | None = None,
    ) -> NewApiKey:
        """A key for ``owner`` whose scopes stay within ``grantable`` (the creating
        principal's scopes, never more than the owner's roles grant)."""
        name, requested = self._checked_request(
            owner, name=name, scopes=scopes, grantable=grantable
        )
        if expires_in is not None and not 60 <= expires_in <= MAX_EXPIRES_IN:
            raise InvalidInput(f"expires_in must be between 60 and {MAX_EXPIRES_IN} seconds.")
        now = self._clock.now()
        secret, public_id, key_hash = new_api_key(self._random)
        key = ApiKey(
            id=self._random.new_id(),
            public_id=public_id,
            user_id=owner.id,
            name=name,
            secret_hash=key_hash,
            scopes=requested,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        )
        await self._store.create(key)
        await self._record_created(key, ctx, actor_id=actor_id, scopes=requested)
        return NewApiKey(key=key, secret=secret)

    # -- the hot path ---------------------------------------------------------------------

    def authenticate_cached(self, presented: str) -> Principal | None:
        """``authenticate`` from memory alone, for a key it would accept: a cached key whose
        every check passes. None otherwise (not cached, or refused: ``authenticate`` reads,
        refuses and records the refusal). Not a coroutine: the hot path."""
        public_id = parse_api_key(presented)
        if public_id is None:
            return None
        entry, due = self.cache.lookup(public_id)
        if entry is None:
            return None
        now = self._clock.now()
        if _refusal(entry, sha256_hex(presented), now) is not None:
            return None
        if due:  # a hot key is re-read before it expires
            self.loads.refresh(public_id, lambda: self._load(public_id))
        self.usage.note(entry.key.id, now, entry.key.user_id)
        return entry.principal

    async def authenticate(self, presented: str, ctx: ContextSource) -> Principal:
        public_id = parse_api_key(presented)
        if public_id is None:
            await self._reject(ctx(), "malformed", None, "The API key is malformed.")
        assert public_id is not None
        key_hash = sha256_hex(presented)
        entry, due = self.cache.lookup(public_id)
        if entry is None:
            # Requests that miss together share one read. The address check guards the
            # store, so only a request that would start a read makes it.
            if not self.loads.flying(public_id):
                await self._check_address(ctx())
            entry = await self.loads.run(public_id, lambda: self._load(public_id))
            if entry is None:
                await self._reject(ctx(), "unknown", public_id, "The API key is not valid.")
        elif due:  # a hot key is re-read before it expires
            self.loads.refresh(public_id, lambda: self._load(public_id))
        assert entry is not None
        now = self._clock.now()
        refusal = _refusal(entry, key_hash, now)
        if refusal is not None:
            reason, message = refusal
            await self._reject(ctx(), reason, public_id, message)
        self.usage.note(entry.key.id, now, entry.key.user_id)
        return entry.principal

    async def lookup(self, presented: str) -> tuple[ApiKey, User] | None:
        """For introspection: the key and its owner, with no side effects; None if unknown
        or the secret does not match."""
        public_id = parse_api_key(presented)
        if public_id is None:
            return None
        key = await self._store.get_by_public_id(public_id)
        if key is None or not key.matches(sha256_hex(presented)):
            return None
        user = await self._owner(key)
        return (key, user) if user is not None else None

    def principal_for(self, key: ApiKey, user: User) -> Principal:
        return Principal(
            kind="user",
            method=AuthMethod.API_KEY,
            user_id=user.id,
            scopes=self._scopes.effective(key.scopes, user.roles),
            roles=frozenset(user.roles) | {IMPLICIT_ROLE},
            expires_at=key.expires_at,
            credential_id=key.id,
            user=user,
        )

    async def _load(self, public_id: str) -> CachedKey | None:
        read_at = self.cache.generation
        key = await self._store.get_by_public_id(public_id)
        user = await self._owner(key)
        if key is None or user is None:
            return None
        entry = CachedKey(key=key, user=user, principal=self.principal_for(key, user))
        self.cache.put(public_id, entry, read_at=read_at)
        return entry

    async def _reject(
        self, ctx: RequestContext, reason: str, public_id: str | None, message: str
    ) -> None:
        await self._auditor.record(
            AuditType.CREDENTIAL_REJECTED,
            ctx,
            kind="api_key",
            reason=reason,
            prefix=f"ww_live_{public_id}" if public_id else None,
        )
        if reason in ("malformed", "unknown", "wrong_secret"):
            await self._count_failure(ctx, reason, public_id)
        raise InvalidCredential(message, code="invalid_api_key")
