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
from watchword.domain.apikeys import CREDENTIAL_REVOKED
from watchword.domain.clock import Clock
from watchword.domain.errors import StoreUnavailable
from watchword.services.control import ControlPlane
from watchword.services.wakeup import wait_for_wake
from watchword.stores.base import ControlFeed, ControlRecord, read_to_end
from watchword.stores.tokens import RevocationStore

log = logging.getLogger("watchword.revocations")

SUBSCRIBER_QUEUE = 10_000
MAX_REPLAY = 5_000
# A disabled client or a disabled or deleted user revokes every token issued to it until then;
# kept as long as the longest token any setting allows could live (a day), plus leeway.
SUBJECT_RETENTION = 86_400.0 + 60.0
SUBJECT_KINDS = ("client", "user")


class RevokedTokens(dict[str, float]):
    """Ids of revoked access tokens, each kept until the token would have expired (jti ->
    until when). A dict itself, as ``RevokedSessions``: ``jti in revoked`` on every request
    is a dict's own lookup. Add with ``add``."""

    def add(self, jti: str, until: float) -> None:
        self[jti] = max(until, self.get(jti, 0.0))

    def prune(self, now: float) -> None:
        for jti in [jti for jti, until in self.items() if until < now]:
            del self[jti]

    def snapshot(self) -> dict[str, float]:
        return dict(self)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One event of the stream: ``kind`` is "session" or "jti" (event ``revoked``), or
    "client" or "user" (event ``revoked_subject``: every token of that client, or of that
    user, issued at or before ``issued_before`` is revoked)."""

    cursor: int
    kind: str
    id: str
    until: float
    issued_before: float | None = None

    @property
    def event(self) -> str:
        return "revoked_subject" if self.kind in SUBJECT_KINDS else "revoked"

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "id": self.id, "until": self.until}
        if self.issued_before is not None:
            data["issued_before"] = self.issued_before
        return data


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
        # (kind, id) of disabled clients and disabled or deleted users: (issued_before, until)
        self.subjects: dict[tuple[str, str], tuple[float, float]] = {}
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
        at = record.at.timestamp()
        if kind == CREDENTIAL_REVOKED and payload.get("kind") == "client":
            if not payload.get("disabled", True):
                return None
            ident = str(payload.get("credential_id"))
            return Revocation(record.id, "client", ident, at + SUBJECT_RETENTION, at)
        if kind == events.USER_CHANGED and payload.get("disabled"):
            ident = str(payload.get("user_id"))
            return Revocation(record.id, "user", ident, at + SUBJECT_RETENTION, at)
        return None

    def apply(self, revocation: Revocation) -> None:
        """Make this node's sets include ``revocation`` (idempotent)."""
        if revocation.issued_before is not None:
            key = (revocation.kind, revocation.id)
            before, until = self.subjects.get(key, (0.0, 0.0))
            self.subjects[key] = (
                max(before, revocation.issued_before),
                max(until, revocation.until),
            )
        elif revocation.kind == "jti":
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
        try:
            await self._learn_subjects(cursor)
        except StoreUnavailable:
            log.warning("revocation feed: disabled clients and users unknown until the store is up")
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

    async def _learn_subjects(self, upto: int) -> None:
        """The clients and users disabled before this node started, from the control feed
        (sessions and token ids come from their own tables)."""
        floor = await self._store.control_floor()
        if floor is None:
            return
        now = self._clock.now().timestamp()
        cursor = floor - 1
        while cursor < upto:
            records = await self._feed.read_after(cursor)
            if not records:
                return
            for record in records:
                if record.id > upto:
                    return
                cursor = record.id
                revocation = self.revocation_of(record)
                if revocation is not None and revocation.issued_before is not None:
                    if revocation.until >= now:
                        self.apply(revocation)

    async def _on_control(self, message: dict[str, Any]) -> None:
        # Read at once only for a stream listening: this node's own checks never wait for the
        # feed (each service applies control events itself), and without a stream the poll
        # keeps the cursor near the end; a new stream catches up first (``catch_up``).
        if self._subscribers and message.get("type") in (
            events.SESSION_REVOKED,
            events.TOKEN_REVOKED,
            events.USER_CHANGED,
            CREDENTIAL_REVOKED,
        ):
            self._wake.set()

    async def read_once(self) -> int:
        """Read and fan out the rows after the cursor; return how many revocations."""
        async with self._reading:  # one reader at a time: each row goes out once
            return await self._read_locked()

    async def catch_up(self) -> None:
        """Before a new stream takes the cursor: read what the feed holds beyond it. With the
        store down the stream starts from the cursor this node has; the poll goes on."""
        try:
            await self.read_once()
        except StoreUnavailable:
            log.warning("revocation feed: a new stream starts without catching up")

    async def _read_locked(self) -> int:
        count = 0
        async for record in read_to_end(self._feed, self.cursor):
            self.cursor = record.id
            revocation = self.revocation_of(record)
            if revocation is None:
                continue
            self.apply(revocation)
            count += 1
            for subscriber in list(self._subscribers):
                self._offer(subscriber, revocation)
        return count

    async def _follow_forever(self) -> None:
        while True:
            await wait_for_wake(self._wake, self._poll_interval)
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
            "clients": self._subjects_of("client", now),
            "users": self._subjects_of("user", now),
            "cursor": self.cursor,
        }

    def _subjects_of(self, kind: str, now: float) -> dict[str, dict[str, float]]:
        for key in [k for k, (_, until) in self.subjects.items() if until < now]:
            del self.subjects[key]
        return {
            ident: {"issued_before": before, "until": until}
            for (k, ident), (before, until) in self.subjects.items()
            if k == kind
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
