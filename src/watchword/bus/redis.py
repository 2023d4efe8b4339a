"""The Redis bus: every node's handlers receive every message, over sharded pub/sub.

Guarantee (the ``EventBus`` contract): **at most once**, in publish order per publisher and
channel. Each bus channel is one Redis shard channel (``SPUBLISH``/``SSUBSCRIBE``, Redis 7+), so
it works on Redis Cluster as on one server. A node that loses its subscription cannot know what
it missed: it reports a gap to the ``on_gap`` handlers when the loss is seen and again once it
is subscribed again (they flush caches and re-read the durable control feed), and reconnects
with jittered exponential backoff. ``publish`` raises ``StoreUnavailable`` when Redis cannot
take the message; callers whose truth is elsewhere (the control feed) log it and carry on.

Each channel has its own subscription link (one connection). On one server every link goes
to that server. On a cluster a link goes to the master owning the channel's slot, read from
the cluster client's slot map; after any loss (the master died, a failover, a ``MOVED``
answer) the link re-reads the slot map before it subscribes again, so it follows the slot
to its new owner. redis-py's own ``ClusterPubSub`` is not used because it reconnects and
re-subscribes silently: a subscriber must *see* every loss, since what was published in
between is gone and its caches must be dropped.
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
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import SlotNotCoveredError

from watchword.bus.base import GapHandler, Handler
from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis.client import (
    REDIS_FAILURES,
    RedisClient,
    RedisOptions,
    make_client,
    node_client,
)

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


class _Link:
    """One channel's subscription: its task, its state, the server it listens to."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.subscribed = asyncio.Event()
        self.server: str | None = None


class RedisBus:
    def __init__(
        self,
        options: RedisOptions,
        *,
        node_id: str = "",
        max_backoff: float = 5.0,
        client: RedisClient | None = None,
    ) -> None:
        self._options = options
        self.node_id = node_id
        self._max_backoff = max_backoff
        self._client = client or make_client(options, retries=1)
        # Subscriptions get their own connections without silent retries: a reconnect must
        # be seen, because messages sent meanwhile are gone. One client per server.
        self._sub_clients: dict[str, Redis] = {}
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._gap_handlers: list[GapHandler] = []
        self._links: dict[str, _Link] = {}
        self._started = False
        self._closed = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_message_at: float | None = None

    # -- the contract ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        # With no handler yet, still hold the control channel: "healthy" must mean something.
        for channel in list(self._handlers) or ["control"]:
            self._open_link(channel)

    async def close(self) -> None:
        """Stop the subscriptions and release every pool (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        tasks = {link.task for link in self._links.values() if link.task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded, and without swallowing a cancellation of close() itself.
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT + 1)
        for link in self._links.values():
            link.task = None
            link.connected = False
        for sub in self._sub_clients.values():
            with contextlib.suppress(*REDIS_FAILURES):
                await sub.aclose()
        await self._client.aclose()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        envelope = json.dumps({"t": time.time(), "o": self.node_id, "m": message})
        try:
            await self._client.spublish(self._options.channel(channel), envelope)
        except REDIS_FAILURES as exc:
            BUS_PUBLISH_FAILURES.inc()
            raise StoreUnavailable("The event bus is unavailable.") from exc

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)
        if self._started and not self._closed and channel not in self._links:
            # A handler subscribed after start gets its channel's link now.
            self._open_link(channel)

    def on_gap(self, handler: GapHandler) -> None:
        self._gap_handlers.append(handler)

    @property
    def healthy(self) -> bool:
        return bool(self._links) and all(link.connected for link in self._links.values())

    # -- extras for readiness and tests ----------------------------------------------------

    async def wait_subscribed(self, within: float) -> bool:
        """True once every subscription is live (or ``False`` after ``within`` seconds)."""
        deadline = asyncio.get_running_loop().time() + within
        while not self._links:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        for link in list(self._links.values()):
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(link.subscribed.wait(), max(0.0, left))
            except TimeoutError:
                return False
        return True

    @property
    def channels(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def servers(self) -> dict[str, str | None]:
        """Each channel and the server its subscription listens to (``None``: not linked)."""
        return {c: (link.server if link.connected else None) for c, link in self._links.items()}

    # -- the subscription links ------------------------------------------------------------

    def _open_link(self, channel: str) -> None:
        link = _Link(channel)
        self._links[channel] = link
        link.task = asyncio.create_task(self._run(link), name=f"watchword-redis-bus-{channel}")

    async def _subscriber(self, link: _Link, *, after_loss: bool) -> Redis:
        """The client of the server that serves ``link``'s channel now."""
        if not isinstance(self._client, RedisCluster):
            if "" not in self._sub_clients:
                self._sub_clients[""] = node_client(self._options, "", 0)
            link.server = "redis"
            return self._sub_clients[""]
        cluster = self._client
        if after_loss:
            # The slot may have moved (failover, resharding): read the map again.
            await cluster.nodes_manager.initialize()
        else:
            await cluster.initialize()
        node = cluster.get_node_from_key(self._options.channel(link.channel))
        if node is None:
            raise SlotNotCoveredError(f"no master serves the slot of {link.channel}")
        if node.name not in self._sub_clients:
            self._sub_clients[node.name] = node_client(self._options, node.host, int(node.port))
        link.server = node.name
        return self._sub_clients[node.name]

    async def _run(self, link: _Link) -> None:
        attempt = 0
        ever_connected = False
        # ``_closed`` ends the loop even where a read swallowed the task's cancellation.
        while not self._closed:
            pubsub: PubSub | None = None
            try:
                client = await self._subscriber(link, after_loss=attempt > 0 or ever_connected)
                pubsub = client.pubsub()
                await self._subscribe(pubsub, link.channel)
                link.connected = True
                link.subscribed.set()
                attempt = 0
                self.last_error = None
                if ever_connected:
                    self.reconnects += 1
                    log.warning("bus resubscribed to %s after a loss; catching up", link.channel)
                    await self._gap()
                ever_connected = True
                await self._receive(pubsub, link.channel)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not end the bus for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("bus loop failed")
            finally:
                # Bounded: a pubsub cancelled half-way through connecting can wait forever.
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                        await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT)
            if self._closed:
                break
            if link.connected:
                log.warning("bus connection lost on %s (%s)", link.channel, self.last_error)
                link.connected = False
                link.subscribed.clear()
                await self._gap()
            attempt += 1
            delay = min(self._max_backoff, 0.05 * 2**attempt)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def _subscribe(self, pubsub: PubSub, channel: str) -> None:
        await pubsub.ssubscribe(self._options.channel(channel))
        # Wait for the confirmation so "healthy" means messages will arrive.
        deadline = asyncio.get_running_loop().time() + self._options.connect_timeout + 1
        while True:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no subscription confirmation from Redis")
            reply = await pubsub.get_message(timeout=POLL_TIMEOUT)
            if reply is not None and reply.get("type") == "ssubscribe":
                return

    async def _receive(self, pubsub: PubSub, channel: str) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        ping_sent: float | None = None
        while not self._closed:
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
