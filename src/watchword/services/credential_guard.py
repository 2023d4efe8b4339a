"""What every machine credential shares: a bounded cache for the hot path, coalesced
last-used tracking, and a brute-force throttle on failures (``limits``, like sign-in)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from limits import RateLimitItem, parse

from watchword.domain import events
from watchword.domain.apikeys import CREDENTIAL_REVOKED
from watchword.domain.audit import AuditType
from watchword.domain.errors import RateLimited, StoreUnavailable
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.bounded_cache import BoundedCache
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.ratelimit import RateLimiter
from watchword.services.single_flight import SingleFlight

_log = logging.getLogger("watchword.credentials")
USAGE_FLUSH_INTERVAL = 5.0


# The request context, built only when needed (a failure to audit, a store lookup): the hot
# path of a cached, valid credential never pays for it.
ContextSource = Callable[[], RequestContext]


class UsageLog:
    """Coalesced last-used times: at most one write per credential per ``interval``."""

    def __init__(self, *, interval: float) -> None:
        self._interval = interval
        self._persisted: dict[str, datetime] = {}
        self.pending: dict[str, datetime] = {}
        self.uses: dict[str, int] = {}
        self.owners: dict[str, str | None] = {}

    def note(self, credential_id: str, now: datetime, owner: str | None = None) -> None:
        self.uses[credential_id] = self.uses.get(credential_id, 0) + 1
        self.owners[credential_id] = owner
        last = self._persisted.get(credential_id)
        if last is None or (now - last).total_seconds() >= self._interval:
            self._persisted[credential_id] = now
            self.pending[credential_id] = now
            if len(self._persisted) > 100_000:
                self._persisted.clear()
                self.owners.clear()

    def last_used(self, credential_id: str) -> datetime | None:
        return self.pending.get(credential_id) or self._persisted.get(credential_id)

    def take(self) -> tuple[dict[str, datetime], dict[str, int]]:
        batch, uses = self.pending, self.uses
        self.pending, self.uses = {}, {}
        return batch, uses

    def give_back(self, batch: dict[str, datetime], uses: dict[str, int]) -> None:
        for key, seen in batch.items():
            self.pending[key] = max(seen, self.pending.get(key, seen))
        for key, count in uses.items():
            self.uses[key] = self.uses.get(key, 0) + count


class CredentialThrottle:
    """Failed attempts spend a budget per client address and per credential id (key id,
    client id). Past the address budget, failures answer 429 and unknown credentials are not
    looked up at all. Past a credential's budget, a credential whose secret is guessable from
    outside (an OAuth2 client secret) answers 429 even to the right secret until the window
    passes (``check_credential``): otherwise the guess that finally hits would be accepted."""

    def __init__(self, *, limiter: RateLimiter, per_ip: str, per_credential: str) -> None:
        self._limiter = limiter
        self._per_ip: RateLimitItem = parse(per_ip)
        self._per_credential: RateLimitItem = parse(per_credential)

    async def check_address(
        self, ip: str | None, on_refusal: Callable[[], Awaitable[None]]
    ) -> None:
        """Before a store lookup: refuse an address that has spent its failure budget
        (``on_refusal`` runs first, to audit it)."""
        if not ip:
            return
        retry_after = await self._limiter.test(self._per_ip, "machine-fail-ip", ip)
        if retry_after:
            await on_refusal()
            raise RateLimited(retry_after)

    async def anonymous_attempt(self, ip: str | None) -> None:
        """An attempt that proves no credential (an unauthenticated RFC 7009 revocation,
        which answers 200 whatever the token): it spends the address's budget like a
        failure, so the endpoint cannot be used to try tokens at leisure."""
        if ip and (retry_after := await self._limiter.hit(self._per_ip, "machine-fail-ip", ip)):
            raise RateLimited(retry_after)

    async def check_credential(
        self, kind: str, credential: str, on_refusal: Callable[[], Awaitable[None]]
    ) -> None:
        """Before the secret is compared: refuse a credential that has spent its failure
        budget, whatever secret comes with it."""
        retry_after = await self._limiter.test(
            self._per_credential, "machine-fail", kind, credential
        )
        if retry_after:
            await on_refusal()
            raise RateLimited(retry_after)

    async def failed(self, *, kind: str, credential: str | None, ip: str | None) -> None:
        """Count a failure; raise ``RateLimited`` when a budget is now spent."""
        if ip and (retry_after := await self._limiter.hit(self._per_ip, "machine-fail-ip", ip)):
            raise RateLimited(retry_after)
        if credential and (
            retry_after := await self._limiter.hit(
                self._per_credential, "machine-fail", kind, credential
            )
        ):
            raise RateLimited(retry_after)


class _OwnedEntry(Protocol):
    """A cached credential knows its owner (to drop it when the owner changes)."""

    @property
    def user(self) -> User: ...


E = TypeVar("E", bound=_OwnedEntry)


class KeyedCredentialService(Generic[E]):
    """What the API-key and signing-key services share: the hot-path cache, emptied by the
    control events that revoke a key or change its owner, and last-used times written in
    batches with one ``credential.used`` audit line per key and flush."""

    kind: ClassVar[str]  # the credential kind in control events and the audit trail

    def __init__(
        self,
        *,
        touch: Callable[[Mapping[str, datetime]], Awaitable[None]],
        auditor: Auditor,
        control: ControlPlane,
        cache_size: int,
        cache_ttl: float,
        touch_interval: float,
    ) -> None:
        self._touch = touch
        self._auditor = auditor
        self.cache: BoundedCache[E] = BoundedCache(max_size=cache_size, ttl=cache_ttl)
        self.loads: SingleFlight[E | None] = SingleFlight()
        self.usage = UsageLog(interval=touch_interval)
        self._tasks: list[asyncio.Task[None]] = []
        control.on_event(self._on_control)

    async def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == CREDENTIAL_REVOKED and message.get("kind") == self.kind:
            self.cache.pop(str(message.get("credential_id")))
        elif kind == events.USER_CHANGED:
            user_id = str(message.get("user_id"))
            self.cache.drop_where(lambda entry: entry.user.id == user_id)
        elif kind == events.CACHE_FLUSH:
            self.cache.clear()

    async def flush_usage(self) -> None:
        """Write coalesced last-used times, and the use counts since the last flush."""
        batch, uses = self.usage.take()
        if not batch and not uses:
            return
        try:
            if batch:
                await self._touch(batch)
            for key_id, count in uses.items():
                await self._auditor.record(
                    AuditType.CREDENTIAL_USED,
                    RequestContext(),
                    user_id=self.usage.owners.get(key_id),
                    kind=self.kind,
                    credential_id=key_id,
                    uses=count,
                )
        except StoreUnavailable:
            self.usage.give_back(batch, uses)
            raise

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._flush_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(StoreUnavailable):
            await self.flush_usage()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(USAGE_FLUSH_INTERVAL)
            try:
                await self.flush_usage()
            except StoreUnavailable:
                _log.warning("%s usage flush: store unavailable", self.kind)
            except Exception:
                _log.exception("%s usage flush failed", self.kind)
