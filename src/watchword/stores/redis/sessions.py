"""The Redis session cache: a write-through layer in front of the SQL session store.

The database stays the truth: every write goes to SQL first and only then touches Redis, and a
2xx never rests on Redis alone. Reads by secret hash come from Redis when it holds the session
(bounded TTL), else from SQL, and are cached with ``put_session.lua``, which refuses a session
whose revoked marker exists, so a loader racing a revocation cannot re-cache it.

Revocation writes a marker (the cluster's revoked-session set, each key expiring with its
session) and drops the cached copy in one step (``revoke_session.lua``). It happens on the node
that revoked, and again on every node when the control event arrives (the CLI and the user
store revoke without this layer). An invalidation Redis could not take is retried when Redis
is back; meanwhile every node's in-process revoked set (fed by the durable control feed)
refuses the session anyway.

An entry carries the control-feed position its loader had reached. A node trusts only entries
loaded at or after the position it started from: revocations older than that are reflected in
the entry, newer ones reach the node through the feed.

Redis down: with ``fallback="none"`` a lookup raises ``StoreUnavailable`` (503: no one is let in
while revocations cannot be checked); with ``fallback="database"`` it reads SQL directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter

from watchword.domain.audit import AuditEvent
from watchword.domain.errors import StoreUnavailable
from watchword.domain.sessions import Session
from watchword.stores.base import AuditStore, ControlFeed, Database, SessionStore, UserStore
from watchword.stores.redis.client import REDIS_FAILURES, RedisClient, RedisOptions
from watchword.stores.redis.scripts import LuaScript, load_script

log = logging.getLogger("watchword.redis")

REDIS_SESSION_LOOKUPS = Counter(
    "watchword_redis_session_lookups_total",
    "Session lookups by secret in the Redis cache, by result",
    ["result"],
)
# A revoked marker lives until the session would have expired, but never longer than this.
MAX_MARKER_SECONDS = 86_400

Fallback = Literal["none", "database"]


def session_to_json(session: Session, cursor: int) -> str:
    data: dict[str, Any] = {
        "id": session.id,
        "user_id": session.user_id,
        "secret_hash": session.secret_hash,
        "kind": session.kind,
        "created_at": session.created_at.isoformat(),
        "last_seen_at": session.last_seen_at.isoformat(),
        "expires_at": session.expires_at.isoformat(),
        "idle_timeout_seconds": session.idle_timeout_seconds,
        "device_name": session.device_name,
        "user_agent": session.user_agent,
        "ip": session.ip,
        "cursor": cursor,
    }
    return json.dumps(data, separators=(",", ":"))


def session_from_json(raw: bytes | str) -> tuple[Session, int]:
    data = json.loads(raw)
    session = Session(
        id=str(data["id"]),
        user_id=str(data["user_id"]),
        secret_hash=data["secret_hash"],
        kind=str(data["kind"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        last_seen_at=datetime.fromisoformat(data["last_seen_at"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
        idle_timeout_seconds=int(data["idle_timeout_seconds"]),
        device_name=data["device_name"],
        user_agent=data["user_agent"],
        ip=data["ip"],
    )
    return session, int(data["cursor"])


class RedisSessionCache:
    """The Redis half: cached sessions, the revoked-session set, and their scripts.

    Keys: the cached session and its revoked marker are tagged with the session id (one
    slot, so ``put_session.lua`` and ``revoke_session.lua`` stay atomic on a cluster). A
    lookup comes by secret hash, so a pointer ``secret:{hash} -> session id`` leads to the
    entry; the entry names its own secret hash, and a pointer whose entry was dropped,
    revoked or rotated to another secret is a miss. A stale pointer is harmless: what
    decides is the entry, and the entry lives beside its marker.
    """

    def __init__(self, client: RedisClient, options: RedisOptions, *, ttl: int) -> None:
        self._client = client
        self._options = options
        self._ttl = ttl
        self._put = LuaScript(client, load_script("put_session.lua"))
        self._revoke = LuaScript(client, load_script("revoke_session.lua"))
        # Invalidations Redis could not take: retried when it is back.
        self.pending: dict[str, float] = {}

    def _pointer_key(self, secret_hash: str) -> str:
        return self._options.key("secret", secret_hash)

    def _entry_key(self, session_id: str) -> str:
        return self._options.key("sess", session_id)

    def _marker_key(self, session_id: str) -> str:
        return self._options.key("revoked", session_id)

    async def get(self, secret_hash: str) -> tuple[Session, int] | None:
        raw_id = await self._client.get(self._pointer_key(secret_hash))
        if raw_id is None:
            return None
        session_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        raw = await self._client.get(self._entry_key(session_id))
        if raw is None:
            return None
        try:
            session, cursor = session_from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed cached session")
            await self._client.delete(self._entry_key(session_id))
            return None
        if session.secret_hash != secret_hash:
            return None  # the session moved on to another secret (rotation)
        return session, cursor

    async def put(self, session: Session, cursor: int) -> bool:
        """Cache a live session; ``False`` when its revoked marker forbids it."""
        if session.secret_hash is None or session.revoked_at is not None:
            return False
        stored = await self._put(
            keys=[self._entry_key(session.id), self._marker_key(session.id)],
            args=[session_to_json(session, cursor), self._ttl],
        )
        if not stored:
            return False
        # After the entry: a pointer is only ever followed to an entry that checks itself.
        await self._client.set(
            self._pointer_key(session.secret_hash), session.id.encode(), ex=self._ttl
        )
        return True

    async def revoke(self, session_id: str, expires_at: float, now: float) -> None:
        """Mark revoked and drop the cached copy; remembered for a retry if Redis fails."""
        marker_ttl = int(min(MAX_MARKER_SECONDS, max(1.0, expires_at - now + 1)))
        try:
            await self._revoke(
                keys=[self._marker_key(session_id), self._entry_key(session_id)],
                args=[marker_ttl],
            )
        except REDIS_FAILURES:
            self.pending[session_id] = max(expires_at, self.pending.get(session_id, 0.0))
            raise
        self.pending.pop(session_id, None)

    async def retry_pending(self, now: float) -> int:
        """Replay the invalidations that failed; return how many went through."""
        done = 0
        for session_id, expires_at in list(self.pending.items()):
            if expires_at < now:
                self.pending.pop(session_id, None)
                continue
            await self.revoke(session_id, expires_at, now)
            done += 1
        return done

    async def is_revoked(self, session_id: str) -> bool:
        return bool(await self._client.exists(self._marker_key(session_id)))

    async def ping(self) -> None:
        await self._client.ping()


class RedisCachedSessionStore:
    """``SessionStore`` over SQL with Redis in front of ``get_by_secret_hash``."""

    def __init__(
        self,
        inner: SessionStore,
        cache: RedisSessionCache,
        *,
        fallback: Fallback,
        now: Callable[[], float],
    ) -> None:
        self._inner = inner
        self.cache = cache
        self._fallback = fallback
        self._now = now
        # Set by the container once the control plane exists: (position reached, start).
        self.cursor: Callable[[], int] = lambda: 0
        self.trusted_from: Callable[[], int] = lambda: 0

    async def get_by_secret_hash(self, secret_hash: str) -> Session | None:
        try:
            cached = await self.cache.get(secret_hash)
        except REDIS_FAILURES as exc:
            REDIS_SESSION_LOOKUPS.labels("unavailable").inc()
            if self._fallback == "database":
                return await self._inner.get_by_secret_hash(secret_hash)
            raise StoreUnavailable("The session cache (Redis) is unavailable.") from exc
        if cached is not None and cached[1] >= self.trusted_from():
            REDIS_SESSION_LOOKUPS.labels("hit").inc()
            return cached[0]
        REDIS_SESSION_LOOKUPS.labels("miss").inc()
        cursor = self.cursor()  # read before SQL: the entry is at least this fresh
        session = await self._inner.get_by_secret_hash(secret_hash)
        if session is not None and session.revoked_at is None:
            try:
                await self.cache.put(session, cursor)
            except REDIS_FAILURES as exc:
                if self._fallback != "database":
                    raise StoreUnavailable("The session cache (Redis) is unavailable.") from exc
        return session

    async def _invalidate(self, sessions: list[Session]) -> None:
        now = self._now()
        for session in sessions:
            try:
                await self.cache.revoke(session.id, session.expires_at.timestamp(), now)
            except REDIS_FAILURES:
                log.warning("session %s: Redis invalidation deferred until it is back", session.id)

    # -- writes: SQL first, then Redis ------------------------------------------------------

    async def create(
        self,
        session: Session,
        *,
        limit: int,
        policy: str,
        grace_seconds: int,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        amr: Sequence[str] | None = None,
    ) -> list[Session]:
        evicted = await self._inner.create(
            session,
            limit=limit,
            policy=policy,
            grace_seconds=grace_seconds,
            origin=origin,
            audit=audit,
            amr=amr,
        )
        await self._invalidate(evicted)
        return evicted

    async def revoke(
        self,
        session_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        owner_id: str | None = None,
    ) -> Session | None:
        revoked = await self._inner.revoke(
            session_id, reason, now, origin=origin, audit=audit, owner_id=owner_id
        )
        if revoked is not None:
            await self._invalidate([revoked])
        return revoked

    async def revoke_all(
        self,
        user_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        except_session_id: str | None = None,
    ) -> list[Session]:
        revoked = await self._inner.revoke_all(
            user_id, reason, now, origin=origin, except_session_id=except_session_id
        )
        await self._invalidate(revoked)
        return revoked

    async def revoke_kind(
        self, kind: str, reason: str, now: datetime, *, origin: str
    ) -> list[Session]:
        revoked = await self._inner.revoke_kind(kind, reason, now, origin=origin)
        await self._invalidate(revoked)
        return revoked

    # -- the rest is the database's ---------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Read-side helpers added to the SQL store later pass straight through.
        return getattr(self._inner, name)

    async def get(self, session_id: str) -> Session | None:
        return await self._inner.get(session_id)

    async def list_live(self, user_id: str, now: datetime) -> list[Session]:
        return await self._inner.list_live(user_id, now)

    async def list_all_live(self, now: datetime, *, limit: int) -> list[Session]:
        return await self._inner.list_all_live(now, limit=limit)

    async def touch(self, last_seen: Mapping[str, datetime]) -> None:
        await self._inner.touch(last_seen)

    async def clear_expired(self, now: datetime, *, keep_revoked_for: int) -> int:
        # Redis entries expire by their TTLs; only the database needs sweeping.
        return await self._inner.clear_expired(now, keep_revoked_for=keep_revoked_for)


class RedisCachedDatabase:
    """The SQL database with the Redis session layer; everything else passes through."""

    def __init__(self, inner: Database, sessions: RedisCachedSessionStore) -> None:
        self._inner = inner
        self._sessions = sessions

    @property
    def inner(self) -> Database:
        return self._inner

    @property
    def users(self) -> UserStore:
        return self._inner.users

    @property
    def sessions(self) -> RedisCachedSessionStore:
        return self._sessions

    @property
    def audit(self) -> AuditStore:
        return self._inner.audit

    @property
    def control(self) -> ControlFeed:
        return self._inner.control

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        # Stores and helpers other parts add to the SQL database (engine, upgrade, ...).
        return getattr(self._inner, name)


if TYPE_CHECKING:

    def _is_session_store(store: RedisCachedSessionStore) -> SessionStore:
        return store

    def _is_database(db: RedisCachedDatabase) -> Database:
        return db
