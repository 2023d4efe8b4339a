"""Signing keys and RFC 9421 signed requests: register keys, verify requests, stop replays.

HMAC secrets are sealed under the master key and unsealed once into the verification cache;
Ed25519 keys are public. A request is checked in this order: its ``Signature-Input`` parameters
(components, window, nonce shape), the key, the signature itself, the body digest, and only then
the nonce is spent, so a forged request cannot burn someone else's nonce.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from watchword.domain.apikeys import credential_revoked
from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import InvalidInput, NotFound, RateLimited
from watchword.domain.masterkey import MasterKey
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE, ScopePolicy, parse_scope, require_subset
from watchword.domain.signatures import (
    MAX_NAME_LENGTH,
    SignatureAlgorithm,
    SignaturePolicy,
    SignatureRejected,
    SigningKey,
    VerificationKey,
    ed25519_public_key,
    hmac_secret_bytes,
    new_hmac_secret,
    new_key_id,
    parse_ed25519_public_key,
    read_signature_input,
    verify_signature,
)
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.credential_guard import CredentialThrottle, KeyedCredentialService
from watchword.stores.base import Database
from watchword.stores.machines import SigningKeyStore
from watchword.stores.nonces import NonceStore

log = logging.getLogger("watchword.signing")

FLUSH_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class CachedSigningKey:
    key: SigningKey
    user: User
    verification_key: VerificationKey
    principal: Principal


@dataclass(frozen=True, slots=True)
class NewSigningKey:
    key: SigningKey
    secret: str | None  # the HMAC secret, shown once; None for Ed25519


class SigningService(KeyedCredentialService[CachedSigningKey]):
    kind = "signing_key"

    def __init__(
        self,
        *,
        db: Database,
        store: SigningKeyStore,
        nonces: NonceStore,
        clock: Clock,
        randomness: Randomness,
        master_key: MasterKey,
        scope_policy: ScopePolicy,
        control: ControlPlane,
        auditor: Auditor,
        throttle: CredentialThrottle,
        policy: SignaturePolicy,
        cache_size: int,
        cache_ttl: float,
        touch_interval: float,
    ) -> None:
        self._db = db
        self._store = store
        self._nonces = nonces
        self._clock = clock
        self._random = randomness
        self._master_key = master_key
        self._scopes = scope_policy
        self._control = control
        self._throttle = throttle
        self.policy = policy
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
        algorithm: str,
        scopes: str | list[str],
        grantable: frozenset[str],
        ctx: RequestContext,
        public_key: str | None = None,
        actor_id: str | None = None,
    ) -> NewSigningKey:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidInput(f"The name must be 1 to {MAX_NAME_LENGTH} printable characters.")
        try:
            alg = SignatureAlgorithm(algorithm)
        except ValueError as exc:
            raise InvalidInput("algorithm must be 'hmac-sha256' or 'ed25519'.") from exc
        requested = parse_scope(scopes)
        if not requested:
            raise InvalidInput("Give the key at least one scope.")
        if owner.disabled:
            raise InvalidInput("The account is disabled.")
        require_subset(requested, grantable & self._scopes.scopes_for_roles(owner.roles))
        secret: str | None = None
        if alg is SignatureAlgorithm.HMAC_SHA256:
            if public_key is not None:
                raise InvalidInput("An hmac-sha256 key takes no public_key: the server makes it.")
            secret = new_hmac_secret(self._random)
            material = self._master_key.seal(secret.encode())
        else:
            if not public_key:
                raise InvalidInput("An ed25519 key needs its public_key (PEM or base64url).")
            material = parse_ed25519_public_key(public_key)
        key = SigningKey(
            id=new_key_id(self._random),
            user_id=owner.id,
            name=name,
            algorithm=alg,
            material=material,
            scopes=requested,
            created_at=self._clock.now(),
        )
        await self._store.create(key)
        await self._auditor.record(
            AuditType.CREDENTIAL_CREATED,
            ctx,
            user_id=owner.id,
            actor_id=actor_id,
            kind="signing_key",
            credential_id=key.id,
            algorithm=alg.value,
            scopes=sorted(requested),
        )
        return NewSigningKey(key=key, secret=secret)

    async def list_for_user(self, user_id: str) -> list[tuple[SigningKey, datetime | None]]:
        result = []
        for key in await self._store.list_for_user(user_id):
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
    ) -> SigningKey:
        revoked = await self._store.revoke(
            key_id, self._clock.now(), origin=self._control.node_id, user_id=owner_id
        )
        if revoked is None:
            raise NotFound("No such signing key.")
        self.cache.pop(revoked.id)
        await self._control.announce(
            [credential_revoked("signing_key", revoked.id, revoked.user_id)]
        )
        await self._auditor.record(
            AuditType.CREDENTIAL_REVOKED,
            ctx,
            user_id=revoked.user_id,
            actor_id=actor_id,
            kind="signing_key",
            credential_id=revoked.id,
        )
        return revoked

    # -- verification ---------------------------------------------------------------------

    async def authenticate(
        self,
        *,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        ctx: RequestContext,
    ) -> Principal:
        try:
            sig = read_signature_input(headers)
        except SignatureRejected as exc:
            await self._reject(ctx, "malformed", None, exc)
            raise
        try:
            self.policy.check_params(sig, self._clock.now())
        except SignatureRejected as exc:
            await self._reject(ctx, "policy", sig.key_id, exc, count=False)
            raise
        entry = self.cache.get(sig.key_id)
        if entry is None:
            await self._throttle.check_address(
                ctx.ip,
                lambda: self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="signing_key", reason="address"
                ),
            )
            entry = await self._load(sig.key_id)
            if entry is None:
                await self._reject(
                    ctx, "unknown_key", sig.key_id, SignatureRejected("Unknown keyid.")
                )
        assert entry is not None
        if entry.key.revoked_at is not None:
            await self._reject(
                ctx, "revoked", sig.key_id, SignatureRejected("The signing key is revoked."), False
            )
        if entry.user.disabled:
            await self._reject(
                ctx, "account_disabled", sig.key_id, SignatureRejected("The account is disabled.")
            )
        try:
            verify_signature(
                method=method,
                url=url,
                headers=headers,
                body=body,
                sig=sig,
                algorithm=entry.key.algorithm,
                key=entry.verification_key,
            )
        except SignatureRejected as exc:
            await self._reject(ctx, "bad_signature", sig.key_id, exc)
        if sig.nonce is not None:
            ttl = 2 * self.policy.window_seconds + 1
            if not await self._nonces.add_if_absent(f"{sig.key_id}:{sig.nonce}", ttl):
                await self._reject(
                    ctx, "replayed", sig.key_id, SignatureRejected("Replayed nonce."), False
                )
        self.usage.note(entry.key.id, self._clock.now(), entry.key.user_id)
        return entry.principal

    def _verification_key(self, key: SigningKey) -> VerificationKey:
        if key.algorithm is SignatureAlgorithm.HMAC_SHA256:
            return hmac_secret_bytes(self._master_key.unseal(key.material).decode())
        return ed25519_public_key(key.material)

    async def _load(self, key_id: str) -> CachedSigningKey | None:
        key = await self._store.get(key_id)
        if key is None:
            return None
        user = await self._db.users.get(key.user_id)
        if user is None:
            return None
        principal = Principal(
            kind="user",
            method=AuthMethod.SIGNATURE,
            user_id=user.id,
            scopes=self._scopes.effective(key.scopes, user.roles),
            roles=frozenset(user.roles) | {IMPLICIT_ROLE},
            credential_id=key.id,
            user=user,
        )
        try:
            verification_key = self._verification_key(key)
        except (InvalidInput, ValueError):
            # Sealed under another master key, or damaged: this key cannot verify anything.
            log.error("signing key %s cannot be opened with this master key", key.id)
            return None
        entry = CachedSigningKey(
            key=key, user=user, verification_key=verification_key, principal=principal
        )
        self.cache.put(key_id, entry)
        return entry

    async def _reject(
        self,
        ctx: RequestContext,
        reason: str,
        key_id: str | None,
        exc: SignatureRejected,
        count: bool = True,
    ) -> None:
        await self._auditor.record(
            AuditType.CREDENTIAL_REJECTED,
            ctx,
            kind="signing_key",
            reason=reason,
            credential_id=key_id,
            detail=exc.message,
        )
        if count:
            try:
                await self._throttle.failed(kind="signing_key", credential=key_id, ip=ctx.ip)
            except RateLimited:
                await self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="signing_key", reason=reason
                )
                raise
        raise exc
