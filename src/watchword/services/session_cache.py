"""A bounded in-process cache of session validity: the hot path never waits on a store.

Entries are dropped by the same control events that carry revocations, expire after a short
TTL so a missed event cannot keep a revoked session alive for long, and the whole cache is
flushed when the bus reports a gap. A hot entry is reloaded in the background before its TTL
(``refresh_age``); ``epoch`` lets a load that began before a drop leave the cache alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from watchword.domain.clock import monotonic
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.services.single_flight import refresh_age


class Freshness(IntEnum):
    STALE = 0  # read the store before trusting it
    DUE = 1  # trusted, and old enough to be reloaded in the background
    FRESH = 2


STALE, DUE, FRESH = Freshness.STALE, Freshness.DUE, Freshness.FRESH


@dataclass(slots=True)
class CachedSession:
    principal: Principal
    session: Session
    user: User
    loaded_at: float
    last_seen: datetime
    persisted_seen: datetime
    # POSIX time from which the next check must compare datetimes again (a new entry: now).
    recheck_at: float = float("-inf")


class SessionCache:
    def __init__(self, *, max_size: int, ttl: float) -> None:
        self._max_size = max_size
        self._ttl = ttl
        self._due_age = refresh_age(ttl)
        self._by_hash: dict[str, CachedSession] = {}
        self._hash_by_session: dict[str, str] = {}
        # Moves on every drop: a load that read the store before a drop must not put back
        # what the drop removed (``put``'s ``since``).
        self.epoch = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, secret_hash: str) -> tuple[CachedSession | None, Freshness]:
        """The entry (possibly stale, so its last-seen time survives a reload) and how far
        it can be trusted without reading the store; the clock is read once."""
        entry = self._by_hash.get(secret_hash)
        if entry is not None:
            age = monotonic() - entry.loaded_at
            if age <= self._ttl:
                self.hits += 1
                return entry, DUE if age >= self._due_age else FRESH
        self.misses += 1
        return entry, STALE

    def peek(self, secret_hash: str) -> CachedSession | None:
        """The entry, however old, without counting a use."""
        return self._by_hash.get(secret_hash)

    def put(self, secret_hash: str, entry: CachedSession, *, since: int | None = None) -> None:
        """Keep ``entry``; with ``since`` (the epoch its load began in), only if nothing was
        dropped meanwhile."""
        if since is not None and since != self.epoch:
            return
        if len(self._by_hash) >= self._max_size and secret_hash not in self._by_hash:
            # Evict the oldest insertion (dicts keep order): bounded memory, no scan.
            oldest = next(iter(self._by_hash))
            self._drop_hash(oldest)
        self._by_hash.pop(secret_hash, None)
        self._by_hash[secret_hash] = entry
        self._hash_by_session[entry.session.id] = secret_hash

    def _drop_hash(self, secret_hash: str) -> None:
        entry = self._by_hash.pop(secret_hash, None)
        if entry is not None:
            self._hash_by_session.pop(entry.session.id, None)

    def drop_session(self, session_id: str) -> None:
        self.epoch += 1
        secret_hash = self._hash_by_session.pop(session_id, None)
        if secret_hash is not None:
            self._by_hash.pop(secret_hash, None)

    def drop_user(self, user_id: str) -> None:
        self.epoch += 1
        for secret_hash in [h for h, e in self._by_hash.items() if e.user.id == user_id]:
            self._drop_hash(secret_hash)

    def clear(self) -> None:
        self.epoch += 1
        self._by_hash.clear()
        self._hash_by_session.clear()
