"""Control events: announce revocations at once, and catch up from the durable feed.

A node that revokes announces on the bus right away. Every node also polls the control feed
(the ``control_log`` table) for rows written elsewhere, by the CLI or by a node whose bus
message never arrived, so a revocation is never lost: at worst it arrives one poll later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from watchword.bus.base import CONTROL, EventBus
from watchword.domain import events
from watchword.domain.clock import Clock
from watchword.domain.errors import StoreUnavailable
from watchword.stores.base import ControlFeed, read_to_end

log = logging.getLogger("watchword.control")

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]


class RevokedSessions(dict[str, float]):
    """Ids of recently revoked sessions, each kept until no token of it can still be valid
    (id -> until when). A dict itself: every request asks ``session_id in revoked``, and a
    dict answers that without a Python-level ``__contains__``. Add with ``add``."""

    def __init__(self, *, retention: float) -> None:
        super().__init__()
        self._retention = retention

    def add(self, session_id: str, now: float, session_expires_at: float | None = None) -> None:
        until = now + self._retention
        if session_expires_at is not None:
            until = min(until, session_expires_at + 1)
        self[session_id] = max(until, self.get(session_id, 0.0))

    def prune(self, now: float) -> None:
        for sid in [sid for sid, until in self.items() if until < now]:
            del self[sid]

    def snapshot(self) -> dict[str, float]:
        return dict(self)


class ControlPlane:
    def __init__(
        self,
        *,
        bus: EventBus,
        feed: ControlFeed,
        clock: Clock,
        poll_interval: float,
        revoked: RevokedSessions,
    ) -> None:
        self.node_id = f"node-{uuid.uuid4().hex[:12]}"
        self._bus = bus
        self._feed = feed
        self._clock = clock
        self._poll_interval = poll_interval
        self.revoked = revoked
        self._handlers: list[ControlHandler] = []
        self._cursor = 0
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._poll_lock = asyncio.Lock()
        self.feed_healthy = True
        self.last_poll_at: float | None = None
        # The feed position this node started from: it has applied every row after it.
        self.start_cursor = 0
        bus.subscribe(CONTROL, self._dispatch)
        bus.on_gap(self._on_gap)

    def on_event(self, handler: ControlHandler) -> None:
        self._handlers.append(handler)

    @property
    def cursor(self) -> int:
        """The last control-feed row this node has applied."""
        return self._cursor

    async def announce(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Publish control events that this node has already recorded in the feed.

        The feed is the truth: a bus that cannot take the message is logged, not raised (the
        other nodes read the row at their next poll)."""
        for payload in payloads:
            try:
                await self._bus.publish(CONTROL, {**payload, "origin": self.node_id})
            except StoreUnavailable:
                log.warning("bus unavailable: %s reaches other nodes by the feed", payload["type"])

    async def _on_gap(self) -> None:
        """The bus may have lost messages: drop every cache, then catch up from the feed."""
        await self._dispatch({"type": events.CACHE_FLUSH, "origin": self.node_id})
        try:
            await self.poll_once()
        except StoreUnavailable:
            log.warning("control feed unreachable after a bus gap; the poller will catch up")

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == events.SESSION_REVOKED:
            # The same revocation can arrive by bus and by feed: apply it once.
            key = str(message.get("session_id"))
            if key in self._recent:
                return
            self._recent[key] = None
            if len(self._recent) > 10_000:
                self._recent.popitem(last=False)
            self.revoked.add(
                str(message["session_id"]),
                self._clock.now().timestamp(),
                float(message.get("expires_at") or 0) or None,
            )
        for handler in self._handlers:
            try:
                await handler(message)
            except Exception:
                log.exception("control handler failed for %s", message.get("type"))

    async def start(self) -> None:
        try:
            self._cursor = await self._feed.last_id()
            self.start_cursor = self._cursor
        except StoreUnavailable:
            self.feed_healthy = False
            log.warning("control feed unreachable at start; will catch up when it returns")
        self._task = asyncio.create_task(self._poll_forever(), name="watchword-control-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll_once(self) -> int:
        """Apply control rows written since the cursor; return how many."""
        applied = 0
        async with self._poll_lock:  # the poller and a bus gap may both catch up
            async for record in read_to_end(self._feed, self._cursor):
                self._cursor = record.id
                await self._dispatch(dict(record.payload))
                applied += 1
        self.revoked.prune(self._clock.now().timestamp())
        return applied

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
                self.feed_healthy = True
                self.last_poll_at = asyncio.get_running_loop().time()
            except StoreUnavailable:
                if self.feed_healthy:
                    log.warning("control feed unreachable; sessions re-read from the store")
                self.feed_healthy = False
            except Exception:
                log.exception("control feed poll failed")
            await asyncio.sleep(self._poll_interval)


__all__ = ["ControlPlane", "RevokedSessions"]
