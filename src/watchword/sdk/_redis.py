"""``RedisRevocationSource``: revocations read straight from a Watchword cluster's Redis.

For a service that shares the cluster's Redis and would rather not hold an SSE connection to
Watchword. It follows the server's Redis layout (``WATCHWORD_REDIS_PREFIX``, default
``watchword``):

- live events: the control channel ``{prefix}:bus:control`` (sharded pub/sub, Redis 7+), JSON
  envelopes ``{"t": sent, "o": node, "m": message}`` whose ``m.type`` is ``session.revoked``
  (``session_id``, ``expires_at``) or ``token.revoked`` (``jti``, ``expires_at``);
- the snapshot: the revoked-session markers ``{prefix}:revoked:{<sid>}`` and revoked-token keys
  ``{prefix}:rjti:{<jti>}`` (the id in braces is the key's hash tag), each expiring when it no
  longer matters.

A Redis Cluster URL (``redis+cluster://host:port,host:port``, as the server takes) works too:
the snapshot scans every master, and the subscription goes to the master owning the control
channel's slot (found again on every reconnect, so it follows a failover).

It subscribes first and reads the snapshot second, so nothing published in between is lost. A
quiet link is proved alive by a ping; a lost one is reopened with jittered backoff, and the
snapshot is read again (pub/sub does not replay what was missed). Example::

    verifier = Verifier(
        issuer="https://auth.example.com",
        revocations=RedisRevocationSource("redis://redis.internal:6379/0"),
        max_feed_staleness=30,
    )
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from watchword.sdk._revocations import RevocationSink, RevocationSource

__all__ = ["RedisRevocationSource"]

logger = logging.getLogger("watchword.sdk")

POLL_TIMEOUT = 1.0
SCAN_COUNT = 1000


class RedisRevocationSource:
    """A ``RevocationSource`` on the cluster's Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "watchword",
        max_until: float = 86_400.0,
        quiet_ping: float = 5.0,
        socket_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if quiet_ping <= 0 or socket_timeout <= 0 or backoff_max < backoff_initial < 0:
            raise ValueError("timeouts must be positive and backoff_max >= backoff_initial")
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:bus:control"
        self._session_pattern = f"{prefix}:revoked:"
        self._jti_pattern = f"{prefix}:rjti:"
        self._max_until = max_until
        self._quiet_ping = quiet_ping
        self._socket_timeout = socket_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._rng = rng
        self.connections = 0
        self.failures = 0
        self.last_error: str | None = None
        self.client_name = f"watchword-sdk-{random.getrandbits(48):012x}"
        self._synced = False
        self._silent_for = 0.0

    # -- the two ways to run ------------------------------------------------------------------

    def run(self, sink: RevocationSink, stop: threading.Event) -> None:
        """In a thread: ``arun`` on an event loop of its own, until ``stop`` is set."""

        async def until_stopped() -> None:
            task = asyncio.create_task(self.arun(sink))
            await asyncio.to_thread(stop.wait)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(until_stopped())

    async def arun(self, sink: RevocationSink) -> None:
        delay = self._backoff_initial
        while True:
            client = self._client()
            self._synced = False
            self._silent_for = 0.0
            try:
                await self._follow(client, sink)
            except Exception as exc:  # a feed must outlive any single failure
                self._lost(sink, f"{type(exc).__name__}: {exc}", self._silent_for)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            delay = self._backoff_initial if self._synced else min(self._backoff_max, delay * 2)
            await asyncio.sleep(delay / 2 + self._rng() * delay / 2)

    # -- one connection -----------------------------------------------------------------------

    def _connection_options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._socket_timeout,
            "client_name": self.client_name,
            "decode_responses": False,
        }

    def _client(self) -> Any:
        """One server (``redis://``, ``rediss://``) or a Redis Cluster (``redis+cluster://``)."""
        import redis.asyncio as aredis
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        from watchword.stores.redis.client import is_cluster_url, parse_cluster_url

        if not is_cluster_url(self.url):
            return aredis.Redis.from_url(self.url, **self._connection_options())
        address = parse_cluster_url(self.url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.seeds],
            username=address.username,
            password=address.password,
            ssl=address.tls,
            require_full_coverage=False,
            **self._connection_options(),
        )

    async def _subscriber(self, client: Any) -> Any:
        """The connection to subscribe on: on a cluster, the master owning the channel's slot
        (each reconnect builds a new cluster client, so it follows a failover)."""
        import redis.asyncio as aredis
        from redis.asyncio.cluster import RedisCluster

        from watchword.stores.redis.client import parse_cluster_url

        if not isinstance(client, RedisCluster):
            return client
        await client.initialize()
        node = client.get_node_from_key(self.channel)
        if node is None:
            raise ConnectionError(f"no master serves the slot of {self.channel}")
        address = parse_cluster_url(self.url)
        return aredis.Redis(
            host=node.host,
            port=int(node.port),
            username=address.username,
            password=address.password,
            ssl=address.tls,
            **self._connection_options(),
        )

    async def _follow(self, client: Any, sink: RevocationSink) -> None:
        """Subscribes, reads the snapshot, then applies events; returns only by raising."""
        loop = asyncio.get_running_loop()
        subscriber = await self._subscriber(client)
        pubsub = subscriber.pubsub()
        try:
            self.connections += 1
            await pubsub.ssubscribe(self.channel)
            deadline = loop.time() + self._socket_timeout + 1
            while True:  # the confirmation: from here on, messages will arrive
                if loop.time() > deadline:
                    raise TimeoutError("no subscription confirmation from Redis")
                reply = await pubsub.get_message(timeout=POLL_TIMEOUT)
                if reply is not None and reply.get("type") == "ssubscribe":
                    break
            sessions, jtis = await self._snapshot(client)
            sink.apply_snapshot(sessions, jtis)
            sink.feed_up()
            self._synced = True
            self.failures = 0
            quiet_since = loop.time()
            ping_sent: float | None = None
            while True:
                reply = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_TIMEOUT
                )
                now = loop.time()
                self._silent_for = now - quiet_since
                if reply is None:
                    if ping_sent is not None and now - ping_sent > self._socket_timeout + 1:
                        raise TimeoutError("Redis did not answer a ping on the pub/sub link")
                    if ping_sent is None and now - quiet_since >= self._quiet_ping:
                        # A quiet link may be a dead one: prove it with a round trip.
                        await pubsub.ping()
                        ping_sent = now
                    continue
                quiet_since = now
                ping_sent = None
                if reply.get("type") == "smessage":
                    self._apply(reply.get("data"), sink)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            if subscriber is not client:
                with contextlib.suppress(Exception):
                    await subscriber.aclose()

    async def _snapshot(self, client: Any) -> tuple[dict[str, float], dict[str, float]]:
        now = self._clock()
        found: list[dict[str, float]] = []
        for prefix in (self._session_pattern, self._jti_pattern):
            table: dict[str, float] = {}
            keys: list[bytes] = []
            async for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=SCAN_COUNT):
                keys.append(key)
            for start in range(0, len(keys), SCAN_COUNT):
                batch = keys[start : start + SCAN_COUNT]
                async with client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.pttl(key)
                    ttls = await pipe.execute()
                for key, ttl in zip(batch, ttls, strict=True):
                    if ttl == -2:  # expired between SCAN and PTTL
                        continue
                    tagged = key.decode(errors="replace")[len(prefix) :]
                    if not (tagged.startswith("{") and tagged.endswith("}")):
                        continue  # another key under the prefix (the session cache...)
                    ident = tagged[1:-1]
                    seconds = self._max_until if ttl < 0 else min(ttl / 1000, self._max_until)
                    if ident:
                        table[ident] = now + seconds
            found.append(table)
        return found[0], found[1]

    def _apply(self, data: object, sink: RevocationSink) -> None:
        try:
            message = json.loads(data)["m"]  # type: ignore[arg-type]
            kind = message.get("type")
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("revocation feed (redis): dropped a malformed control message")
            return
        if kind == "session.revoked":
            ident = message.get("session_id")
            table = "session"
        elif kind == "token.revoked":
            ident = message.get("jti")
            table = "jti"
        else:
            return  # other control traffic (cache flushes, user changes, keys)
        expires_at = message.get("expires_at")
        if not isinstance(ident, str) or not ident:
            logger.warning("revocation feed (redis): a %s event without an id", kind)
            return
        ceiling = self._clock() + self._max_until
        if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
            until = min(float(expires_at), ceiling)
        else:
            until = ceiling  # no bound given: keep it as long as any token could live
        sink.revoke(table, ident, until)

    def _lost(self, sink: RevocationSink, why: str, silent_for: float) -> None:
        sink.feed_down(silent_for)
        self.last_error = why
        self.failures += 1
        level = logging.WARNING if self.failures % 10 == 1 else logging.DEBUG
        logger.log(level, "revocation feed (redis) %s: %s; reconnecting", self.channel, why)


def _glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


if TYPE_CHECKING:  # mypy checks that the implementation keeps the protocol
    _source: type[RevocationSource] = RedisRevocationSource
