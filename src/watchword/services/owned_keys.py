"""Keys a user owns (API keys, request-signing keys): one shape for creating, listing and
revoking them, and for refusing a bad presentation.

Each service states only what differs: how a key is made and verified, which id its cache
and control events use (``_cache_id``), and what the audit trail adds (``_audit_details``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from watchword.domain.apikeys import credential_revoked
from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import InvalidInput, NotFound, RateLimited
from watchword.domain.scopes import ScopePolicy, parse_scope, require_subset
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.credential_guard import (
    CredentialThrottle,
    KeyedCredentialService,
    _OwnedEntry,
)
from watchword.stores.base import Database

MAX_KEY_NAME_LENGTH = 100


class OwnedKey(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def last_used_at(self) -> datetime | None: ...


K = TypeVar("K", bound=OwnedKey)
K_co = TypeVar("K_co", bound=OwnedKey, covariant=True)
E = TypeVar("E", bound=_OwnedEntry)


class OwnedKeyStore(Protocol[K_co]):
    """What ``ApiKeyStore`` and ``SigningKeyStore`` have in common."""

    async def get(self, key_id: str) -> K_co | None: ...

    async def list_for_user(self, user_id: str) -> Sequence[K_co]: ...

    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> K_co | None: ...

    async def touch(self, last_used: Mapping[str, datetime]) -> None: ...


class OwnedKeyService(KeyedCredentialService[E], Generic[K, E]):
    noun: ClassVar[str]  # "API key": in the operator's and the API's messages

    def __init__(
        self,
        *,
        db: Database,
        store: OwnedKeyStore[K],
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
        self._keys = store
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

    # -- what each service adapts -------------------------------------------------------

    def _cache_id(self, key: K) -> str:
        """The id the hot-path cache and the revocation events know the key by."""
        return key.id

    def _audit_details(self, key: K) -> dict[str, Any]:
        return {}

    # -- management -----------------------------------------------------------------------

    def _checked_request(
        self, owner: User, *, name: str, scopes: str | list[str], grantable: frozenset[str]
    ) -> tuple[str, frozenset[str]]:
        """The cleaned name and the scopes of a new key, within what ``grantable`` (the
        creating principal's scopes) and the owner's roles both allow."""
        name = name.strip()
        if not name or len(name) > MAX_KEY_NAME_LENGTH or not name.isprintable():
            raise InvalidInput(f"The name must be 1 to {MAX_KEY_NAME_LENGTH} printable characters.")
        requested = parse_scope(scopes)
        if not requested:
            raise InvalidInput("Give the key at least one scope.")
        if owner.disabled:
            raise InvalidInput("The account is disabled.")
        require_subset(requested, grantable & self._scopes.scopes_for_roles(owner.roles))
        return name, requested

    async def _record_created(
        self,
        key: K,
        ctx: RequestContext,
        *,
        actor_id: str | None,
        scopes: frozenset[str],
        **details: Any,
    ) -> None:
        await self._auditor.record(
            AuditType.CREDENTIAL_CREATED,
            ctx,
            user_id=key.user_id,
            actor_id=actor_id,
            kind=self.kind,
            credential_id=key.id,
            **self._audit_details(key),
            **details,
            scopes=sorted(scopes),
        )

    async def get(self, key_id: str) -> K | None:
        return await self._keys.get(key_id)

    async def list_for_user(self, user_id: str) -> list[tuple[K, datetime | None]]:
        """The user's unrevoked keys with their latest use (this node's, if newer)."""
        result = []
        for key in await self._keys.list_for_user(user_id):
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
    ) -> K:
        """Revoke at once on this node; the control feed and bus carry it to the others.
        With ``owner_id``, another user's key is ``NotFound``."""
        revoked = await self._keys.revoke(
            key_id, self._clock.now(), origin=self._control.node_id, user_id=owner_id
        )
        if revoked is None:
            raise NotFound(f"No such {self.noun}.")
        self.cache.pop(self._cache_id(revoked))
        await self._control.announce(
            [
                credential_revoked(
                    self.kind, self._cache_id(revoked), revoked.user_id, key_id=revoked.id
                )
            ]
        )
        await self._auditor.record(
            AuditType.CREDENTIAL_REVOKED,
            ctx,
            user_id=revoked.user_id,
            actor_id=actor_id,
            kind=self.kind,
            credential_id=revoked.id,
            **self._audit_details(revoked),
        )
        return revoked

    async def revoke_all_for_user(
        self, user_id: str, ctx: RequestContext, *, actor_id: str | None = None
    ) -> list[K]:
        revoked = []
        for key, _ in await self.list_for_user(user_id):
            try:
                revoked.append(await self.revoke(key.id, ctx, owner_id=user_id, actor_id=actor_id))
            except NotFound:
                continue  # revoked meanwhile by someone else
        return revoked

    # -- refusals -------------------------------------------------------------------------

    async def _check_address(self, ctx: RequestContext) -> None:
        """Before a store lookup: an address past its failure budget is refused."""
        await self._throttle.check_address(
            ctx.ip,
            lambda: self._auditor.record(
                AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind=self.kind, reason="address"
            ),
        )

    async def _count_failure(
        self, ctx: RequestContext, reason: str, credential: str | None
    ) -> None:
        try:
            await self._throttle.failed(kind=self.kind, credential=credential, ip=ctx.ip)
        except RateLimited:
            await self._auditor.record(
                AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind=self.kind, reason=reason
            )
            raise

    async def _owner(self, key: K | None) -> User | None:
        return None if key is None else await self._db.users.get(key.user_id)
