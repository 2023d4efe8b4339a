"""Revoked access tokens, and the revocation feed that remote verifiers follow.

``RevokedTokens`` is the in-memory set of revoked ``jti``s, each kept until its token
expires. ``RevocationFeed`` turns the durable control feed into the events of
``GET /v1/revocations/stream``: one reader per node follows the ``control_log`` (woken at once
by the control events this node sees, and polling as a fallback) and fans revocations out to
the connected streams, each event carrying its ``control_log`` id so a stream can resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchword.domain import events
from watchword.domain.clock import Clock
from watchword.domain.errors import StoreUnavailable
from watchword.services.control import ControlPlane
from watchword.stores.base import ControlFeed, ControlRecord
from watchword.stores.tokens import RevocationStore

log = logging.getLogger("watchword.revocations")

SUBSCRIBER_QUEUE = 10_000
MAX_REPLAY = 5_000


class RevokedTokens:
    """Ids of revoked access tokens, each kept until the token would have expired."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def add(self, jti: str, until: float) -> None:
        self._until[jti] = max(until, self._until.get(jti, 0.0))

    def __contains__(self, jti: object) -> bool:
        return jti in self._until

    def __len__(self) -> int:
        return len(self._until)

    def prune(self, now: float) -> None:
        for jti in [jti for jti, until in self._until.items() if until < now]:
            del self._until[jti]

    def snapshot(self) -> dict[str, float]:
        return dict(self._until)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One event of the stream: ``kind`` is "session" or "jti"."""

    cursor: int
    kind: str
    id: str
    until: float

    def data(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "until": self.until}


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Revocation | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    lagged: bool = False


class RevocationFeed:
    def __init__(
        self,
        *,
        feed: ControlFeed,
        store: RevocationStore,
        control: ControlPlane,
        jtis: RevokedTokens,
        clock: Clock,
        session_retention: float,
        poll_interval: float,
    ) -> None:
        self._feed = feed
        self._store = store
        self._control = control
        self._jtis = jtis
        self._clock = clock
        self._retention = session_retention
        self._poll_interval = poll_interval
        self.cursor = 0
        self._subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._reading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        control.on_event(self._on_control)

    # -- reading the control feed ---------------------------------------------------------

    def revocation_of(self, record: ControlRecord) -> Revocation | None:
        payload = record.payload
        kind = payload.get("type")
        if kind == events.SESSION_REVOKED:
            # The same bound the in-memory set applies (RevokedSessions.add).
            until = record.at.timestamp() + self._retention
            expires = float(payload.get("expires_at") or 0) or None
            if expires is not None:
                until = min(until, expires + 1)
            return Revocation(record.id, "session", str(payload.get("session_id")), until)
        if kind == events.TOKEN_REVOKED:
            until = float(payload.get("expires_at") or 0)
            return Revocation(record.id, "jti", str(payload.get("jti")), until)
        return None

    def apply(self, revocation: Revocation) -> None:
        """Make this node's sets include ``revocation`` (idempotent)."""
        if revocation.kind == "jti":
            self._jtis.add(revocation.id, revocation.until)
        else:
            revoked = self._control.revoked
            retention_start = revocation.until - self._retention
            revoked.add(revocation.id, retention_start, revocation.until - 1)

    async def start(self, cursor: int) -> None:
        """Follow the control feed from ``cursor`` (everything up to it is already in the
        in-memory sets)."""
        self.cursor = cursor
        self.closed = False
        self._task = asyncio.create_task(self._follow_forever(), name="watchword-revocations")

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close(self) -> None:
        """End every stream (server shutdown)."""
        self.closed = True
        for subscriber in list(self._subscribers):
            self._offer(subscriber, None)

    async def _on_control(self, message: dict[str, Any]) -> None:
        if message.get("type") in (events.SESSION_REVOKED, events.TOKEN_REVOKED):
            self._wake.set()

    async def read_once(self) -> int:
        """Read and fan out the rows after the cursor; return how many revocations."""
        async with self._reading:  # one reader at a time: each row goes out once
            return await self._read_locked()

    async def _read_locked(self) -> int:
        count = 0
        while True:
            records = await self._feed.read_after(self.cursor)
            if not records:
                return count
            for record in records:
                self.cursor = record.id
                revocation = self.revocation_of(record)
                if revocation is None:
                    continue
                self.apply(revocation)
                count += 1
                for subscriber in list(self._subscribers):
                    self._offer(subscriber, revocation)

    async def _follow_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            try:
                await self.read_once()
                self._jtis.prune(self._clock.now().timestamp())
            except StoreUnavailable:
                log.warning("revocation feed: control feed unreachable")
            except Exception:
                log.exception("revocation feed failed")

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _offer(self, subscriber: Subscriber, item: Revocation | None) -> None:
        try:
            subscriber.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A reader this slow gets a fresh snapshot instead of an endless backlog.
            subscriber.lagged = True

    def snapshot(self) -> dict[str, Any]:
        now = self._clock.now().timestamp()
        return {
            "sessions": {
                sid: until
                for sid, until in self._control.revoked.snapshot().items()
                if until >= now
            },
            "jtis": {jti: until for jti, until in self._jtis.snapshot().items() if until >= now},
            "cursor": self.cursor,
        }

    async def replay_after(self, last_id: int, upto: int) -> list[Revocation] | None:
        """The revocations after ``last_id`` up to ``upto``; None when the feed no longer
        holds them all (or the id is not one this feed gave), so a snapshot must be sent."""
        if last_id > upto:
            return None
        if last_id == upto:
            return []
        floor = await self._store.control_floor()
        if floor is None or last_id < floor - 1:
            return None
        replay: list[Revocation] = []
        cursor = last_id
        while cursor < upto:
            records = await self._feed.read_after(cursor)
            if not records:
                break
            for record in records:
                if record.id > upto:
                    return replay
                cursor = record.id
                revocation = self.revocation_of(record)
                if revocation is not None:
                    replay.append(revocation)
                    if len(replay) > MAX_REPLAY:
                        return None
        return replay


def sse_frame(
    event: str | None = None,
    data: Any = None,
    *,
    event_id: int | None = None,
    comment: str | None = None,
    dumps: Callable[[Any], str],
) -> bytes:
    """One server-sent event (or a comment line) in the text/event-stream format."""
    lines: list[str] = []
    if comment is not None:
        lines.append(f": {comment}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    if data is not None:
        lines.append(f"data: {dumps(data)}")
    return ("\n".join(lines) + "\n\n").encode()


__all__ = ["Revocation", "RevocationFeed", "RevokedTokens", "Subscriber", "sse_frame"]
