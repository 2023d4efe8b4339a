"""Signing keys as a service: the key that signs, the keys that verify, the JWKS, rotation.

Every node holds the keys in memory and reloads them when a ``keys.changed`` control event
arrives (by bus or from the control feed, so a ``watchword keys rotate`` run from the command
line reaches running servers). A token whose ``kid`` is unknown triggers one rate-limited
reload as well, for the second between a rotation elsewhere and its event arriving here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from watchword.domain import events
from watchword.domain.clock import Clock, Randomness, monotonic
from watchword.domain.errors import InvalidInput, StoreUnavailable
from watchword.domain.keys import PrivateKey, StoredKey, load_private_pem, new_key
from watchword.domain.masterkey import MasterKey
from watchword.domain.tokens import keys_changed
from watchword.services.control import ControlPlane
from watchword.stores.tokens import KeyStore

log = logging.getLogger("watchword.keys")

KID_BYTES = 12
ADD_ATTEMPTS = 5
UNKNOWN_KID_RELOAD_INTERVAL = 1.0
JWKS_MAX_AGE = 300
BOOTSTRAP_RETRY = 1.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    private: PrivateKey


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str
    algorithm: str
    public: Any
    verify_until: float | None  # epoch seconds; None while the key still signs
    # Epoch seconds the key stopped signing (None while it signs): no token it verifies can
    # have been issued after that.
    retired_at: float | None = None


class KeyService:
    def __init__(
        self,
        *,
        store: KeyStore,
        master_key: MasterKey,
        clock: Clock,
        randomness: Randomness,
        control: ControlPlane,
        algorithm: str,
        max_token_lifetime: timedelta,
        rotation_interval: int,
    ) -> None:
        self._store = store
        self._master_key = master_key
        self._clock = clock
        self._random = randomness
        self._control = control
        self.algorithm = algorithm
        self.max_token_lifetime = max_token_lifetime
        self.rotation_interval = rotation_interval
        self._keys: list[StoredKey] = []
        self._signing: SigningKey | None = None
        self._verifying: dict[str, VerifyingKey] = {}
        self._signing_created_at: datetime | None = None
        # The signing key's private half, parsed once: a key id's key never changes, and
        # parsing an RSA key (with its consistency checks) costs ~40 ms of event loop.
        self._parsed: dict[str, PrivateKey] = {}
        self._last_unknown_reload = float("-inf")
        self._reload_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        control.on_event(self._on_control)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or create) the signing key. With the store down the node still starts:
        signing and unknown key ids answer 503 until a background retry succeeds."""
        try:
            await self.ensure_key()
            ready = True
        except StoreUnavailable:
            log.warning("key store unreachable at start; retrying in the background")
            ready = False
        self._task = asyncio.create_task(self._upkeep_forever(ready), name="watchword-keys")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def ensure_key(self) -> None:
        """Make sure a key of the configured algorithm signs (first start, or a changed
        ``WATCHWORD_JWT_ALGORITHM``). Safe when several workers start at once."""
        for _ in range(ADD_ATTEMPTS):
            keys = await self._store.all()
            newest = keys[-1] if keys else None
            if newest is not None and newest.algorithm == self.algorithm:
                self._install(keys)
                return
            await self._add_after(newest)
        raise StoreUnavailable("Could not establish a signing key; try again.")

    async def rotate(self) -> str:
        """Introduce a new signing key, retire the current one; return the new key id."""
        for _ in range(ADD_ATTEMPTS):
            keys = await self._store.all()
            kid = await self._add_after(keys[-1] if keys else None)
            if kid is not None:
                await self.reload()
                return kid
        raise StoreUnavailable("The key store is busy with other rotations; try again.")

    async def rotate_if_due(self) -> str | None:
        """Rotate when the signing key is older than the rotation period. Of several nodes
        doing this at once only one adds a key (the generation is the guard)."""
        if self.rotation_interval <= 0:
            return None
        keys = await self._store.all()
        newest = keys[-1] if keys else None
        if newest is not None:
            age = self._clock.now() - newest.created_at
            if age < timedelta(seconds=self.rotation_interval):
                return None
        kid = await self._add_after(newest)
        await self.reload()
        return kid

    async def prune(self) -> int:
        """Delete keys that can no longer have a valid token."""
        return await self._store.delete_retired_before(self._clock.now() - self.max_token_lifetime)

    async def _add_after(self, newest: StoredKey | None) -> str | None:
        now = self._clock.now()
        kid = self._random.token(KID_BYTES)
        stored, private = new_key(
            self.algorithm,
            kid=kid,
            generation=(newest.generation if newest else 0) + 1,
            now=now,
            seal=lambda pem: self._master_key.seal(pem),
        )
        if not await self._store.add(stored, now, origin=self._control.node_id):
            return None
        self._parsed[kid] = private
        log.info("signing key %s (%s) now signs", kid, self.algorithm)
        await self._control.announce([keys_changed(kid)])
        return kid

    # -- loading --------------------------------------------------------------------------

    async def reload(self) -> None:
        async with self._reload_lock:
            self._install(await self._store.all())

    def _install(self, keys: list[StoredKey]) -> None:
        now = self._clock.now()
        verifying: dict[str, VerifyingKey] = {}
        signing: SigningKey | None = None
        signing_created: datetime | None = None
        for key in keys:
            if not key.publishable(now, self.max_token_lifetime):
                continue
            until = key.verify_until(self.max_token_lifetime)
            verifying[key.kid] = VerifyingKey(
                kid=key.kid,
                algorithm=key.algorithm,
                public=jwt.PyJWK(key.public_jwk, key.algorithm).key,
                verify_until=until.timestamp() if until is not None else None,
                retired_at=key.retired_at.timestamp() if key.retired_at is not None else None,
            )
        newest = keys[-1] if keys else None
        if newest is not None and newest.retired_at is None:
            private = self._parsed.get(newest.kid) or self._unseal(newest)
            self._parsed = {newest.kid: private}
            signing = SigningKey(newest.kid, newest.algorithm, private)
            signing_created = newest.created_at
        self._keys = [k for k in keys if k.kid in verifying]
        self._verifying = verifying
        self._signing = signing
        self._signing_created_at = signing_created

    def _unseal(self, key: StoredKey) -> PrivateKey:
        try:
            pem = self._master_key.unseal(key.private_sealed)
        except InvalidInput as exc:
            raise InvalidInput(
                "The signing key was sealed with another master key: check "
                "WATCHWORD_SECRET_KEY (every node needs the same one)."
            ) from exc
        return load_private_pem(pem, key.algorithm)

    async def _on_control(self, message: dict[str, Any]) -> None:
        if message.get("type") in (events.KEYS_CHANGED, events.CACHE_FLUSH):
            await self.reload()

    # -- use ------------------------------------------------------------------------------

    def signing_key(self) -> SigningKey:
        if self._signing is None:
            raise StoreUnavailable("No signing key is loaded yet.")
        return self._signing

    def verifying_key(self, kid: str, now: float) -> VerifyingKey | None:
        key = self._verifying.get(kid)
        if key is None or (key.verify_until is not None and now >= key.verify_until):
            return None
        return key

    async def reload_for_unknown_kid(self) -> bool:
        """Reload once for a token signed by a key this node has not seen; at most once per
        second, so forged key ids cannot turn into a store load. True when it reloaded."""
        now = monotonic()
        if now - self._last_unknown_reload < UNKNOWN_KID_RELOAD_INTERVAL:
            return False
        self._last_unknown_reload = now
        await self.reload()
        return True

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify: the signing key and the retired ones still needed."""
        if not self._verifying:
            raise StoreUnavailable("The signing keys are not loaded yet.")
        now = self._clock.now()
        return {
            "keys": [
                dict(k.public_jwk)
                for k in reversed(self._keys)
                if k.publishable(now, self.max_token_lifetime)
            ]
        }

    def describe(self) -> list[dict[str, Any]]:
        """Every loaded key with its state, newest first."""
        return self._describe(self._keys)

    async def describe_all(self) -> list[dict[str, Any]]:
        """Every stored key, expired ones included (for ``watchword keys list``)."""
        return self._describe(await self._store.all())

    def _describe(self, keys: list[StoredKey]) -> list[dict[str, Any]]:
        now = self._clock.now()
        rows = []
        for key in reversed(keys):
            until = key.verify_until(self.max_token_lifetime)
            if key.retired_at is None:
                state = "signing"
            elif key.publishable(now, self.max_token_lifetime):
                state = "verifying"
            else:
                state = "expired"
            rows.append(
                {
                    "kid": key.kid,
                    "algorithm": key.algorithm,
                    "generation": key.generation,
                    "state": state,
                    "created_at": key.created_at.isoformat(),
                    "retired_at": key.retired_at.isoformat() if key.retired_at else None,
                    "verify_until": until.isoformat() if until else None,
                }
            )
        return rows

    # -- upkeep ---------------------------------------------------------------------------

    async def _upkeep_forever(self, ready: bool) -> None:
        while not ready:
            await asyncio.sleep(BOOTSTRAP_RETRY)
            try:
                await self.ensure_key()
                ready = True
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("loading the signing keys failed")
        interval = max(1.0, min(3600.0, self.rotation_interval / 20 or 3600.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.rotate_if_due()
                await self.prune()
            except StoreUnavailable:
                log.warning("key upkeep: store unavailable")
            except Exception:
                log.exception("key upkeep failed")


__all__ = ["KeyService", "SigningKey", "VerifyingKey"]
