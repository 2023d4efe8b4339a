"""API keys as a service: create (shown once), list, revoke, and the hot-path authentication.

The hot path is a SHA-256 and a dict hit, like the session cookie: a bounded cache keyed by the
key's public id holds the row, its owner and the ready principal. Revocations, role changes and
disabled users reach the cache through control events (bus at once, control feed within a poll).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchword.domain.apikeys import (
    MAX_NAME_LENGTH,
    ApiKey,
    credential_revoked,
    new_api_key,
    parse_api_key,
)
from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, Randomness, sha256_hex
from watchword.domain.errors import (
    InvalidCredential,
    InvalidInput,
    NotFound,
    RateLimited,
)
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE, ScopePolicy, parse_scope, require_subset
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.credential_guard import (
    ContextSource,
    CredentialThrottle,
    KeyedCredentialService,
)
from watchword.stores.base import Database
from watchword.stores.machines import ApiKeyStore

log = logging.getLogger("watchword.apikeys")

MAX_EXPIRES_IN = 5 * 365 * 86400


@dataclass(frozen=True, slots=True)
class CachedKey:
    key: ApiKey
    user: User
    principal: Principal


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: ApiKey
    secret: str  # the full key, shown once


class ApiKeyService(KeyedCredentialService[CachedKey]):
    kind = "api_key"

    def __init__(
        self,
        *,
        db: Database,
        store: ApiKeyStore,
        clock: Clock,
        randomness: Randomness,
        scope_policy: ScopePolicy,
        control: ControlPlane,
        auditor: Auditor,
        throttle: CredentialThrottle,
        cache_size: int,
        cache_ttl: float,
        touch_interval: float,
    ) -> None:
        self._db = db
        self._store = store
        self._clock = clock
        self._random = randomness
        self._scopes = scope_policy
        self._control = control
        self._throttle = throttle
        super().__init__(
            touch=store.touch,
            auditor=auditor,
            control=control,
            cache_size=cache_size,
            cache_ttl=cache_ttl,
            touch_interval=touch_interval,
        )

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
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidInput(f"The name must be 1 to {MAX_NAME_LENGTH} printable characters.")
        requested = parse_scope(scopes)
        if not requested:
            raise InvalidInput("Give the key at least one scope.")
        if owner.disabled:
            raise InvalidInput("The account is disabled.")
        allowed = grantable & self._scopes.scopes_for_roles(owner.roles)
        require_subset(requested, allowed)
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
        await self._auditor.record(
            AuditType.CREDENTIAL_CREATED,
            ctx,
            user_id=owner.id,
            actor_id=actor_id,
            kind="api_key",
            credential_id=key.id,
            prefix=key.prefix,
            scopes=sorted(requested),
        )
        return NewApiKey(key=key, secret=secret)

    async def list_for_user(self, user_id: str) -> list[tuple[ApiKey, datetime | None]]:
        keys = await self._store.list_for_user(user_id)
        result = []
        for key in keys:
            used = self.usage.last_used(key.id)
            if key.last_used_at is not None and (used is None or key.last_used_at > used):
                used = key.last_used_at
            result.append((key, used))
        return result

    async def revoke(
        self,
        key_id: str,
        ctx: RequestContext,
        *,
        owner_id: str | None = None,
        actor_id: str | None = None,
    ) -> ApiKey:
        """Revoke at once on this node; the control feed and bus carry it to the others.
        With ``owner_id``, another user's key is ``NotFound``."""
        revoked = await self._store.revoke(
            key_id, self._clock.now(), origin=self._control.node_id, user_id=owner_id
        )
        if revoked is None:
            raise NotFound("No such API key.")
        self.cache.pop(revoked.public_id)
        await self._control.announce(
            [credential_revoked("api_key", revoked.public_id, revoked.user_id, key_id=revoked.id)]
        )
        await self._auditor.record(
            AuditType.CREDENTIAL_REVOKED,
            ctx,
            user_id=revoked.user_id,
            actor_id=actor_id,
            kind="api_key",
            credential_id=revoked.id,
            prefix=revoked.prefix,
        )
        return revoked

    # -- the hot path ---------------------------------------------------------------------

    async def authenticate(self, presented: str, ctx: ContextSource) -> Principal:
        public_id = parse_api_key(presented)
        if public_id is None:
            await self._reject(ctx(), "malformed", None, "The API key is malformed.")
        assert public_id is not None
        key_hash = sha256_hex(presented)
        entry = self.cache.get(public_id)
        if entry is None:
            await self._throttle.check_address(
                ctx().ip,
                lambda: self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx(), kind="api_key", reason="address"
                ),
            )
            entry = await self._load(public_id)
            if entry is None:
                await self._reject(ctx(), "unknown", public_id, "The API key is not valid.")
        assert entry is not None
        key = entry.key
        if not key.matches(key_hash):
            await self._reject(ctx(), "wrong_secret", public_id, "The API key is not valid.")
        if key.revoked_at is not None:
            await self._reject(ctx(), "revoked", public_id, "The API key has been revoked.")
        now = self._clock.now()
        if key.is_expired(now):
            await self._reject(ctx(), "expired", public_id, "The API key has expired.")
        if entry.user.disabled:
            await self._reject(ctx(), "account_disabled", public_id, "The account is disabled.")
        self.usage.note(key.id, now, key.user_id)
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
        user = await self._db.users.get(key.user_id)
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
        key = await self._store.get_by_public_id(public_id)
        if key is None:
            return None
        user = await self._db.users.get(key.user_id)
        if user is None:
            return None
        entry = CachedKey(key=key, user=user, principal=self.principal_for(key, user))
        self.cache.put(public_id, entry)
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
            try:
                await self._throttle.failed(kind="api_key", credential=public_id, ip=ctx.ip)
            except RateLimited:
                await self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="api_key", reason=reason
                )
                raise
        raise InvalidCredential(message, code="invalid_api_key")
