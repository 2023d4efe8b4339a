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
from typing import Any

from watchword.domain.audit import AuditType
from watchword.domain.errors import InvalidInput
from watchword.domain.masterkey import MasterKey
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE
from watchword.domain.signatures import (
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
from watchword.services.context import RequestContext
from watchword.services.owned_keys import OwnedKeyService
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


class SigningService(OwnedKeyService[SigningKey, CachedSigningKey]):
    kind = "signing_key"
    noun = "signing key"

    def __init__(
        self,
        *,
        store: SigningKeyStore,
        nonces: NonceStore,
        master_key: MasterKey,
        policy: SignaturePolicy,
        **shared: Any,
    ) -> None:
        super().__init__(store=store, **shared)
        self._store = store
        self._nonces = nonces
        self._master_key = master_key
        self.policy = policy

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
        try:
            alg = SignatureAlgorithm(algorithm)
        except ValueError as exc:
            raise InvalidInput("algorithm must be 'hmac-sha256' or 'ed25519'.") from exc
        name, requested = self._checked_request(
            owner, name=name, scopes=scopes, grantable=grantable
        )
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
        await self._record_created(
            key, ctx, actor_id=actor_id, scopes=requested, algorithm=alg.value
        )
        return NewSigningKey(key=key, secret=secret)

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
        entry, due = self.cache.lookup(sig.key_id)
        if entry is None:
            if not self.loads.flying(sig.key_id):  # joining a read costs the store nothing
                await self._check_address(ctx)
            entry = await self.loads.run(sig.key_id, lambda: self._load(sig.key_id))
            if entry is None:
                await self._reject(
                    ctx, "unknown_key", sig.key_id, SignatureRejected("Unknown keyid.")
                )
        elif due:  # a hot key is re-read before it expires
            self.loads.refresh(sig.key_id, lambda: self._load(sig.key_id))
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
        read_at = self.cache.generation
        key = await self._store.get(key_id)
        user = await self._owner(key)
        if key is None or user is None:
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
        self.cache.put(key_id, entry, read_at=read_at)
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
            await self._count_failure(ctx, reason, key_id)
        raise exc
