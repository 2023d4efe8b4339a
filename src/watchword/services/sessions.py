"""Sessions as a service: create, authenticate (the hot path), list, revoke, expire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from watchword.domain import events
from watchword.domain.audit import AuditEvent, AuditType
from watchword.domain.clock import Clock, Randomness, monotonic, sha256_hex
from watchword.domain.errors import InvalidCredential, NotFound, StoreUnavailable
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE, ScopePolicy
from watchword.domain.sessions import (
    RevokeReason,
    Session,
    SessionPolicy,
    new_session_secret,
    plausible_secret,
)
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.session_cache import DUE, STALE, CachedSession, SessionCache
from watchword.services.single_flight import SingleFlight
from watchword.stores.base import Database

log = logging.getLogger("watchword.sessions")

KEEP_REVOKED_SECONDS = 86_400
# How far a session's last-seen time moves at least: in whole seconds, a burst of requests
# leaves it (and what shows it, such as /v1/me's body, kept encoded) alone within a second;
# an idle timeout is then counted from at most a second early.
LAST_SEEN_STEP = timedelta(seconds=1)
RECHECK_MARGIN = 0.001  # seconds
FLUSH_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class NewSession:
    session: Session
    secret: str | None = field(repr=False)  # the cookie secret: never in a log line
    evicted: list[Session]


def _secret_hash(secret: str) -> str:
    """A cookie secret's key in the cache and the store; a malformed one is refused."""
    if not plausible_secret(secret):
        raise InvalidCredential("The session cookie is malformed.", code="invalid_session")
    return sha256_hex(secret)


class SessionService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        randomness: Randomness,
        policy: SessionPolicy,
        scope_policy: ScopePolicy,
        control: ControlPlane,
        cache: SessionCache,
        auditor: Auditor,
        max_per_user: int,
        limit_policy: str,
    ) -> None:
        self._db = db
        self._clock = clock
        self._random = randomness
        self.policy = policy
        self._scopes = scope_policy
        self._control = control
        self.cache = cache
        self._loads: SingleFlight[CachedSession] = SingleFlight()
        self._shown_reads: SingleFlight[Session | None] = SingleFlight()
        self._auditor = auditor
        self._max_per_user = max_per_user
        self._limit_policy = limit_policy
        self._pending_touches: dict[str, datetime] = {}
        self._tasks: list[asyncio.Task[None]] = []
        control.on_event(self._on_control)
        self._created_hooks: list[Callable[[Session], Awaitable[None]]] = []

    # -- creation -------------------------------------------------------------------------

    async def create(
        self,
        user: User,
        ctx: RequestContext,
        *,
        kind: str = "cookie",
        device_name: str | None = None,
        with_secret: bool = True,
        session_id: str | None = None,
        audit: Sequence[AuditEvent] = (),
        secret: str | None = None,
        lifetime: timedelta | None = None,
        amr: Sequence[str] | None = None,
    ) -> NewSession:
        """A new session with a new secret (never a reused one: no fixation).

        ``secret`` and ``lifetime`` serve the /api/v1 compat surface: its session ids are
        fresh uuid4 strings it makes itself, and its expiry follows ``SESSION_DURATION``. A
        session with its own ``lifetime`` has no separate idle timeout.
        """
        now = self._clock.now()
        if secret is not None:
            secret_hash: str | None = sha256_hex(secret)
        else:
            secret, secret_hash = new_session_secret(self._random) if with_secret else (None, None)
        idle_seconds = (
            int(self.policy.idle_timeout.total_seconds())
            if lifetime is None
            else math.ceil(lifetime.total_seconds())
        )
        session = Session(
            id=session_id or self._random.new_id(),
            user_id=user.id,
            secret_hash=secret_hash,
            kind=kind,
            created_at=now,
            last_seen_at=now,
            expires_at=now + (lifetime if lifetime is not None else self.policy.lifetime),
            idle_timeout_seconds=idle_seconds,
            device_name=device_name,
            user_agent=ctx.user_agent,
            ip=ctx.ip,
        )
        evicted = await self._db.sessions.create(
            session,
            limit=self._max_per_user,
            policy=self._limit_policy,
            grace_seconds=int(self.policy.touch_interval.total_seconds()),
            origin=self._control.node_id,
            audit=audit,
            amr=amr,
        )
        if evicted:
            await self.after_revoke(evicted)
            for old in evicted:
                await self._auditor.record(
                    AuditType.SESSION_EVICTED, ctx, user_id=user.id, session_id=old.id
                )
        for hook in self._created_hooks:
            try:
                await hook(session)
            except Exception:
                log.exception("session-created hook failed")
        return NewSession(session=session, secret=secret, evicted=evicted)

    def on_created(self, hook: Callable[[Session], Awaitable[None]]) -> None:
        """Call ``hook`` after every new session (the realtime gateway's sign-in event)."""
        self._created_hooks.append(hook)

    # -- the hot path ---------------------------------------------------------------------

    def principal_for(self, session: Session, user: User, method: AuthMethod) -> Principal:
        return Principal(
            kind="user",
            method=method,
            user_id=user.id,
            session_id=session.id,
            scopes=self._scopes.scopes_for_roles(user.roles),
            roles=frozenset(user.roles) | {IMPLICIT_ROLE},
            expires_at=session.expires_at,
            user=user,
            session=session,
        )

    def authenticate_secret_cached(self, secret: str) -> Principal | None:
        """``authenticate_secret`` from memory alone: the principal of a cached session, or
        the same refusal; None when the session must be read (then ``authenticate_secret``).
        Not a coroutine: the hot path."""
        return self._from_cache(_secret_hash(secret))

    async def authenticate_secret(self, secret: str) -> Principal:
        """Turn a cookie secret into a principal; raise ``InvalidCredential`` otherwise."""
        secret_hash = _secret_hash(secret)
        principal = self._from_cache(secret_hash)
        if principal is not None:
            return principal
        stale = self.cache.peek(secret_hash)  # absent, or too old to serve
        entry = await self._loads.run(secret_hash, lambda: self._load(secret_hash, stale))
        return self._check(entry)

    def _from_cache(self, secret_hash: str) -> Principal | None:
        entry, freshness = self.cache.get(secret_hash)
        if entry is None or freshness is STALE:
            return None
        if freshness is DUE:
            self._loads.refresh(secret_hash, lambda: self._load(secret_hash, entry))
        return self._check(entry)

    async def _load(self, secret_hash: str, stale: CachedSession | None) -> CachedSession:
        epoch = self.cache.epoch
        session = await self._db.sessions.get_by_secret_hash(secret_hash)
        if session is None:
            if stale is not None:
                self.cache.drop_session(stale.session.id)
            raise InvalidCredential("The session does not exist.", code="invalid_session")
        user = await self._db.users.get(session.user_id)
        if user is None:
            raise InvalidCredential("The session does not exist.", code="invalid_session")
        last_seen = session.last_seen_at
        if stale is not None and stale.session.id == session.id:
            last_seen = max(last_seen, stale.last_seen)
        entry = CachedSession(
            principal=self.principal_for(session, user, AuthMethod.COOKIE),
            session=session,
            user=user,
            loaded_at=monotonic(),
            last_seen=last_seen,
            persisted_seen=session.last_seen_at,
        )
        self.cache.put(secret_hash, entry, since=epoch)
        return entry

    def _check(self, entry: CachedSession) -> Principal:
        session = entry.session
        if session.revoked_at is not None or session.id in self._control.revoked:
            raise InvalidCredential("The session has been revoked.", code="session_revoked")
        if entry.user.disabled:
            raise InvalidCredential("The account is disabled.", code="account_disabled")
        if self._clock.timestamp() >= entry.recheck_at:
            self._check_times(entry, self._clock.now())
        return entry.principal

    def _check_times(self, entry: CachedSession, now: datetime) -> None:
        """The session's expiry and idle timeout, and its last-seen time moved. Between two
        moves (a second) and before either deadline nothing here can change, so ``_check``
        compares one float until ``recheck_at`` instead of doing this datetime arithmetic on
        every request."""
        session = entry.session
        if now >= session.expires_at:
            raise InvalidCredential("The session has expired.", code="session_expired")
        idle_expires_at = session.idle_expires_at(entry.last_seen)
        if now >= idle_expires_at:
            raise InvalidCredential("The session timed out.", code="session_expired")
        if now - entry.last_seen >= LAST_SEEN_STEP:
            entry.last_seen = now
            idle_expires_at = session.idle_expires_at(now)
            if now - entry.persisted_seen >= self.policy.touch_interval:
                entry.persisted_seen = now
                self._pending_touches[session.id] = now
        next_move = entry.last_seen + LAST_SEEN_STEP
        # Early by a margin, so a float's rounding never lets a deadline pass unchecked.
        entry.recheck_at = (
            min(next_move, session.expires_at, idle_expires_at).timestamp() - RECHECK_MARGIN
        )

    def last_seen(self, session: Session) -> datetime:
        """The freshest last-seen time this node knows."""
        if session.secret_hash is not None:
            entry = self.cache.peek(session.secret_hash)
            if entry is not None and entry.session.id == session.id:
                return max(entry.last_seen, session.last_seen_at)
        return max(
            self._pending_touches.get(session.id, session.last_seen_at), session.last_seen_at
        )

    def touch(self, session_id: str) -> None:
        """Record activity for a session used without its cookie (tokens, sockets)."""
        self._pending_touches[session_id] = self._clock.now()

    # -- listing and revocation ----------------------------------------------------------

    async def list_live(self, user_id: str) -> list[tuple[Session, datetime]]:
        now = self._clock.now()
        sessions = await self._db.sessions.list_live(user_id, now)
        result = []
        for session in sessions:
            seen = self.last_seen(session)
            if session.is_live(now, seen):
                result.append((session, seen))
        return result

    async def list_all_live(self, *, limit: int) -> list[tuple[Session, datetime]]:
        """Live sessions of every user, newest first."""
        now = self._clock.now()
        result = []
        for session in await self._db.sessions.list_all_live(now, limit=limit):
            seen = self.last_seen(session)
            if session.is_live(now, seen):
                result.append((session, seen))
        return result

    async def get(self, session_id: str) -> Session | None:
        return await self._db.sessions.get(session_id)

    async def get_to_show(self, session_id: str) -> Session | None:
        """``get`` for what is only shown (``/v1/me``'s session), one read for every caller
        asking at the same time: a principal made anew (its account re-read) reaches every
        request in flight on its token at once. Its revocation is checked elsewhere, and a
        read begun a moment before another is as good to show."""
        return await self._shown_reads.run(session_id, lambda: self._db.sessions.get(session_id))

    async def revoke(
        self,
        session_id: str,
        reason: str,
        ctx: RequestContext,
        *,
        owner_id: str | None = None,
        actor_id: str | None = None,
    ) -> Session:
        """Revoke one session. With ``owner_id``, another user's session is ``NotFound``, and
        the store decides it in the revoking statement itself (no read first: a sign-out)."""
        user_id = owner_id
        if user_id is None:
            session = await self._db.sessions.get(session_id)
            if session is None:
                raise NotFound("No such session.")
            user_id = session.user_id
        audit_type = (
            AuditType.LOGOUT if reason == RevokeReason.LOGOUT else AuditType.SESSION_REVOKED
        )
        # The audit line is written in the revocation's own transaction: both or neither.
        event = self._auditor.event(
            audit_type,
            ctx,
            user_id=user_id,
            session_id=session_id,
            actor_id=actor_id,
            reason=reason,
        )
        revoked = await self._db.sessions.revoke(
            session_id,
            reason,
            self._clock.now(),
            origin=self._control.node_id,
            audit=[event],
            owner_id=owner_id,
        )
        if revoked is None:
            raise NotFound("No such session.")
        await self.after_revoke([revoked])
        return revoked

    async def revoke_all(
        self,
        user_id: str,
        reason: str,
        ctx: RequestContext,
        *,
        except_session_id: str | None = None,
        actor_id: str | None = None,
    ) -> list[Session]:
        revoked = await self._db.sessions.revoke_all(
            user_id,
            reason,
            self._clock.now(),
            origin=self._control.node_id,
            except_session_id=except_session_id,
        )
        await self.after_revoke(revoked)
        if not revoked and reason != RevokeReason.ADMIN:
            return revoked  # nothing happened: no audit row claiming a revocation
        await self._auditor.record(
            AuditType.SESSIONS_REVOKED,
            ctx,
            user_id=user_id,
            session_id=except_session_id,
            actor_id=actor_id,
            reason=reason,
            sessions=[s.id for s in revoked],
        )
        return revoked

    async def after_revoke(self, revoked: list[Session]) -> None:
        # Drop locally first: this node must refuse the session before the response leaves.
        now = self._clock.now().timestamp()
        for session in revoked:
            self._control.revoked.add(session.id, now, session.expires_at.timestamp())
            self.cache.drop_session(session.id)
            self._pending_touches.pop(session.id, None)
        await self._control.announce(
            [
                events.session_revoked(
                    s.id, s.user_id, s.revoked_reason or "revoked", s.expires_at.timestamp()
                )
                for s in revoked
            ]
        )

    @property
    def node_id(self) -> str:
        return self._control.node_id

    async def announce_user_changed(self, user_id: str, *, disabled: bool) -> None:
        await self._control.announce([events.user_changed(user_id, disabled=disabled)])

    async def _on_control(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == events.SESSION_REVOKED:
            self.cache.drop_session(str(message.get("session_id")))
        elif kind == events.USER_CHANGED:
            self.cache.drop_user(str(message.get("user_id")))
        elif kind == events.CACHE_FLUSH:
            self.cache.clear()

    # -- background upkeep ----------------------------------------------------------------

    async def flush_touches(self) -> None:
        if not self._pending_touches:
            return
        batch, self._pending_touches = self._pending_touches, {}
        try:
            await self._db.sessions.touch(batch)
        except StoreUnavailable:
            # Keep them for the next round; newer touches win.
            for sid, seen in batch.items():
                self._pending_touches[sid] = max(seen, self._pending_touches.get(sid, seen))
            raise

    async def sweep(self) -> int:
        now = self._clock.now()
        removed = await self._db.sessions.clear_expired(now, keep_revoked_for=KEEP_REVOKED_SECONDS)
        await self._db.control.clear_older_than(now - timedelta(seconds=KEEP_REVOKED_SECONDS))
        return removed

    def start(self, *, sweep_interval: float) -> None:
        self._tasks.append(asyncio.create_task(self._every(FLUSH_INTERVAL, self.flush_touches)))
        self._tasks.append(asyncio.create_task(self._every(sweep_interval, self.sweep)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(StoreUnavailable):
            await self.flush_touches()

    @staticmethod
    async def _every(interval: float, job: object) -> None:
        assert callable(job)
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except StoreUnavailable:
                log.warning("background job %s: store unavailable", getattr(job, "__name__", job))
            except Exception:
                log.exception("background job failed")
