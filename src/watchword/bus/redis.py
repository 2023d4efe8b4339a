"""The Redis bus: every node's handlers receive every message, over sharded pub/sub.

Guarantee (the ``EventBus`` contract): **at most once**, in publish order per publisher and
channel. Each bus channel is one Redis shard channel (``SPUBLISH``/``SSUBSCRIBE``, Redis 7+), so
it works on Redis Cluster as on one server. A node that loses its subscription cannot know what
it missed: it reports a gap to the ``on_gap`` handlers when the loss is seen and again once it
is subscribed again (they flush caches and re-read the durable control feed), and reconnects
with jittered exponential backoff. ``publish`` raises ``StoreUnavailable`` when Redis cannot
take the message; callers whose truth is elsewhere (the control feed) log it and carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import defaultdict
from typing import Any

from prometheus_client import Counter, Histogram
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from watchword.bus.base import GapHandler, Handler
from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis.client import REDIS_FAILURES, RedisOptions, make_client

log = logging.getLogger("watchword.bus")

BUS_LAG = Histogram(
    "watchword_bus_lag_seconds",
    "Time from publish on one node to delivery on this one",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
BUS_GAPS = Counter("watchword_bus_gaps_total", "Times this node may have missed bus messages")
BUS_PUBLISH_FAILURES = Counter(
    "watchword_bus_publish_failures_total", "Messages Redis could not take"
)

POLL_TIMEOUT = 1.0
CLOSE_TIMEOUT = 1.0


class RedisBus:
    def __init__(
        self,
        options: RedisOptions,
        *,
        node_id: str = "",
        max_backoff: float = 5.0,
        client: Redis | None = None,
    ) -> None:
        self._options = options
        self.node_id = node_id
        self._max_backoff = max_backoff
        self._client = client or make_client(options, retries=1)
        # The subscription gets its own connection without silent retries: a reconnect
        # must be seen, because messages sent meanwhile are gone.
        self._sub_client = make_client(options, retries=0)
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._gap_handlers: list[GapHandler] = []
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._subscribed = asyncio.Event()
        self._new_channels: set[str] = set()
        self._closed = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_message_at: float | None = None

    # -- the contract ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchword-redis-bus")

    async def close(self) -> None:
        """Stop the subscription and release both pools (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            # Bounded, and without swallowing a cancellation of close() itself.
            await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT + 1)
            self._task = None
        self._connected = False
        await self._sub_client.aclose()
        await self._client.aclose()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        envelope = json.dumps({"t": time.time(), "o": self.node_id, "m": message})
        try:
            await self._client.spublish(self._options.channel(channel), envelope)
        except REDIS_FAILURES as exc:
            BUS_PUBLISH_FAILURES.inc()
            raise StoreUnavailable("The event bus is unavailable.") from exc

    def subscribe(self, channel: str, handler: Handler) -> None:
        if channel not in self._handlers:
            self._new_channels.add(channel)
        self._handlers[channel].append(handler)

    def on_gap(self, handler: GapHandler) -> None:
        self._gap_handlers.append(handler)

    @property
    def healthy(self) -> bool:
        return self._connected

    # -- extras for readiness and tests ----------------------------------------------------

    async def wait_subscribed(self, within: float) -> bool:
        """True once the subscription is live (or ``False`` after ``within`` seconds)."""
        try:
            await asyncio.wait_for(self._subscribed.wait(), within)
        except TimeoutError:
            return False
        return True

    @property
    def channels(self) -> list[str]:
        return sorted(self._handlers)

    # -- the subscription loop -----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        ever_connected = False
        # ``_closed`` ends the loop even where a read swallowed the task's cancellation.
        while not self._closed:
            pubsub = self._sub_client.pubsub()
            try:
                await self._subscribe_all(pubsub)
                self._connected = True
                self._subscribed.set()
                attempt = 0
                self.last_error = None
                if ever_connected:
                    self.reconnects += 1
                    log.warning("bus resubscribed after a loss; catching up")
                    await self._gap()
                ever_connected = True
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not end the bus for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("bus loop failed")
            finally:
                # Bounded: a pubsub cancelled half-way through connecting can wait forever.
                with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                    await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT)
            if self._closed:
                break
            if self._connected:
                log.warning("bus connection lost (%s)", self.last_error)
                self._connected = False
                self._subscribed.clear()
                await self._gap()
            attempt += 1
            delay = min(self._max_backoff, 0.05 * 2**attempt)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        self._new_channels.clear()
        names = [self._options.channel(c) for c in self._handlers] or [
            self._options.channel("control")
        ]
        await pubsub.ssubscribe(*names)
        # Wait for each confirmation so "healthy" means messages will arrive.
        confirmed = 0
        deadline = asyncio.get_running_loop().time() + self._options.connect_timeout + 1
        while confirmed < len(names):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no subscription confirmation from Redis")
            reply = await pubsub.get_message(timeout=POLL_TIMEOUT)
            if reply is not None and reply.get("type") == "ssubscribe":
                confirmed += 1

    async def _receive(self, pubsub: PubSub) -> None:
        prefix = self._options.channel("")
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        ping_sent: float | None = None
        while not self._closed:
            if self._new_channels:
                # Handlers subscribed after start: add their channels to the live link.
                fresh = [self._options.channel(c) for c in self._new_channels]
                self._new_channels.clear()
                await pubsub.ssubscribe(*fresh)
            reply = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_TIMEOUT)
            now = loop.time()
            if reply is None:
                if ping_sent is not None and now - ping_sent > self._options.socket_timeout + 1:
                    raise TimeoutError("Redis did not answer a ping on the bus link")
                quiet = max(self._options.health_check_interval, POLL_TIMEOUT * 5)
                if ping_sent is None and now - quiet_since >= quiet:
                    # A quiet link may be a dead one: prove it with a round trip.
                    await pubsub.ping()
                    ping_sent = now
                continue
            quiet_since = now
            ping_sent = None
            if reply.get("type") != "smessage":
                continue
            raw_channel = reply["channel"]
            channel = (
                raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
            ).removeprefix(prefix)
            await self._deliver(channel, reply["data"])

    async def _deliver(self, channel: str, data: bytes | str) -> None:
        try:
            envelope = json.loads(data)
            message = envelope["m"]
            sent = float(envelope["t"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed bus message on %s", channel)
            return
        if not isinstance(message, dict):
            log.warning("dropped a malformed bus message on %s", channel)
            return
        now = time.time()
        BUS_LAG.observe(max(0.0, now - sent))
        self.last_message_at = now
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(message)
            except Exception:
                log.exception("bus handler failed on %s", channel)

    async def _gap(self) -> None:
        BUS_GAPS.inc()
        for handler in self._gap_handlers:
            try:
                await handler()
            except Exception:
                log.exception("bus gap handler failed")


__all__ = ["RedisBus"]
