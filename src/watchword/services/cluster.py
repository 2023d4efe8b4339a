"""The node in its cluster: Redis wiring, dependency health, and the node's view of its peers.

With ``WATCHWORD_REDIS_URL`` set, a node uses the Redis bus, the Redis session layer and Redis
rate-limit counters; without it, the in-process bus and memory counters (one node). Every node
writes a heartbeat to ``<prefix>:nodes`` so ``watchword cluster check`` and ``/readyz?verbose=1``
can show which nodes are alive. Failure decisions are in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from watchword.bus.base import EventBus
from watchword.bus.local import LocalBus
from watchword.bus.redis import RedisBus
from watchword.bus.workers import WorkerBus
from watchword.config import Settings, masked_url
from watchword.domain import events
from watchword.domain.errors import StoreUnavailable
from watchword.services.control import ControlPlane
from watchword.services.session_cache import SessionCache
from watchword.stores.base import Database
from watchword.stores.redis.client import (
    REDIS_FAILURES,
    RedisClient,
    RedisOptions,
    make_client,
    node_client,
    parse_cluster_url,
    pool_in_use,
    pooled,
)
from watchword.stores.redis.realtime import RedisPresence, RedisTicketStore
from watchword.stores.redis.revocations import RedisRevokedTokens
from watchword.stores.redis.sessions import (
    RedisCachedDatabase,
    RedisCachedSessionStore,
    RedisSessionCache,
)

log = logging.getLogger("watchword.cluster")

E = TypeVar("E")
G = TypeVar("G")

HEARTBEAT_INTERVAL = 5.0
CLUSTER_SLOTS = 16384
# Failures after which queued Redis writes wait for the next wake-up (gap, heartbeat).
DEFERRABLE: tuple[type[BaseException], ...] = (*REDIS_FAILURES, StoreUnavailable)
# A node not heard from for this long is shown as gone; after an hour it is forgotten.
NODE_STALE_AFTER = 3 * HEARTBEAT_INTERVAL
NODE_FORGET_AFTER = 3600.0

REDIS_POOL_IN_USE = Gauge("watchword_redis_pool_in_use", "Redis connections checked out")
REDIS_POOL_MAX = Gauge("watchword_redis_pool_max", "Redis connections allowed")
DB_POOL_IN_USE = Gauge("watchword_db_pool_in_use", "Database connections checked out")
DB_POOL_SIZE = Gauge("watchword_db_pool_size", "Database connections held by the pool")
SESSION_CACHE_HIT_RATIO = Gauge(
    "watchword_session_cache_hit_ratio", "In-process session cache hits / lookups since start"
)
BUS_UP = Gauge("watchword_bus_up", "1 when the event bus is connected")


def redis_options(settings: Settings) -> RedisOptions | None:
    if not settings.redis_url:
        return None
    return RedisOptions(
        url=settings.redis_url,
        prefix=settings.redis_prefix,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout,
        connect_timeout=settings.redis_connect_timeout,
        health_check_interval=settings.redis_health_check_interval,
    )


def make_bus(settings: Settings) -> EventBus:
    options = redis_options(settings)
    if options is not None:
        return RedisBus(options, max_backoff=settings.bus_reconnect_max_delay)
    if settings.worker_bus:
        # `serve --workers N` on the embedded default: the supervisor relays between workers.
        return WorkerBus(settings.worker_bus)
    return LocalBus()


def rate_limit_storage(settings: Settings) -> tuple[str | None, dict[str, Any]]:
    """The ``limits`` storage URI and options: Redis when configured, else memory."""
    options = redis_options(settings)
    if options is None:
        return None, {}
    shared: dict[str, Any] = {
        "implementation": "redispy",
        "key_prefix": f"{options.prefix}:limits",
        "wrap_exceptions": True,
    }
    connection: dict[str, Any] = {
        "max_connections": max(2, options.max_connections // 4),
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.connect_timeout,
        "health_check_interval": int(options.health_check_interval),
        # A pooled connection that died with a Redis restart is replaced, not reported.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if options.cluster:
        # limits' own cluster storage (redis-py's RedisCluster): every budget is one key, so
        # budgets spread over the masters; TLS is an option there, not a scheme.
        address = parse_cluster_url(options.url)
        creds = options.url.split("://", 1)[1].rpartition("@")[0]
        seeds = ",".join(f"{host}:{port}" for host, port in address.seeds)
        uri = f"async+redis+cluster://{creds + '@' if creds else ''}{seeds}"
        tls = {"ssl": True} if address.tls else {}
        return uri, {**shared, **connection, "require_full_coverage": False, **tls}
    parts = urlsplit(options.url)
    uri = urlunsplit(("async+" + parts.scheme, parts.netloc, parts.path, parts.query, ""))
    # A burst of checks waits for a free connection rather than failing closed at once.
    return uri, {**shared, "connection_pool": pooled(options.url, options, **connection)}


class Cluster:
    """Redis resources of one node, and its health checks. Inert without Redis."""

    def __init__(
        self, settings: Settings, *, now: Callable[[], float], key_fingerprint: str = ""
    ) -> None:
        self.settings = settings
        # Nodes of one cluster must share the master key and the issuer (public URL): the
        # heartbeat carries both so `cluster check` can tell a node that does not.
        self.key_fingerprint = key_fingerprint
        self.options = redis_options(settings)
        self.redis: RedisClient | None = make_client(self.options) if self.options else None
        self.session_cache: RedisSessionCache | None = None
        self.revoked_tokens = (
            RedisRevokedTokens(self.redis, self.options) if self.redis and self.options else None
        )
        self._session_store: RedisCachedSessionStore | None = None
        self._now = now
        self._db: Database | None = None
        self._bus: EventBus | None = None
        self._control: ControlPlane | None = None
        self._local_cache: SessionCache | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._pending_jtis: dict[str, float] = {}
        # One small client per cluster master, for the health probe only.
        self._probe_clients: dict[str, Redis] = {}
        self.started_at = time.time()
        self.address = f"{socket.gethostname()}:{settings.port}"

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    def wrap_database(self, db: Database) -> Database:
        """Put the Redis session layer in front of ``db`` (unchanged without Redis)."""
        if self.redis is None or self.options is None:
            return db
        self.session_cache = RedisSessionCache(
            self.redis, self.options, ttl=self.settings.redis_session_ttl
        )
        self._session_store = RedisCachedSessionStore(
            db.sessions,
            self.session_cache,
            fallback=self.settings.redis_fallback,
            now=self._now,
        )
        return RedisCachedDatabase(db, self._session_store)

    def attach(
        self, *, db: Database, bus: EventBus, control: ControlPlane, local_cache: SessionCache
    ) -> None:
        """Hook into the control plane and the bus once they exist."""
        self._db = db
        self._bus = bus
        self._control = control
        self._local_cache = local_cache
        if isinstance(bus, RedisBus):
            bus.node_id = control.node_id
        if self._session_store is not None:
            self._session_store.cursor = lambda: control.cursor
            self._session_store.trusted_from = lambda: control.start_cursor
        if self.redis is not None:
            control.on_event(self._on_control)
            bus.on_gap(self._on_gap)

    async def _on_control(self, message: dict[str, Any]) -> None:
        # Queued, never awaited here: a mass revocation must not hold up the bus behind
        # thousands of Redis round trips. Correctness does not wait on it (every node's own
        # revoked set refuses the session); the Redis copy only catches up.
        kind = message.get("type")
        if kind == events.TOKEN_REVOKED and self.revoked_tokens is not None:
            # The shared revoked-jti set, for services that check Redis instead of the feed.
            self._pending_jtis[str(message.get("jti"))] = float(message.get("expires_at") or 0)
            self._wake.set()
        elif kind == events.SESSION_REVOKED and self.session_cache is not None:
            if message.get("origin") == self.node_id:
                return  # this node invalidated before it announced (or queued it itself)
            # The CLI and the user store revoke without the Redis layer, and a node that
            # revoked while Redis was down left it pending: every node replays it.
            expires_at = float(message.get("expires_at") or 0) or self._now() + 86_400
            sid = str(message.get("session_id"))
            pending = self.session_cache.pending
            pending[sid] = max(expires_at, pending.get(sid, 0.0))
            self._wake.set()

    async def _on_gap(self) -> None:
        self._wake.set()

    async def flush_pending(self) -> int:
        """Write queued invalidations and revoked token ids to Redis; how many sessions."""
        done = 0
        if self.revoked_tokens is not None:
            for jti, until in list(self._pending_jtis.items()):
                await self.revoked_tokens.add(jti, until, self._now())
                self._pending_jtis.pop(jti, None)
        if self.session_cache is not None and self.session_cache.pending:
            done = await self.session_cache.retry_pending(self._now())
        return done

    async def _invalidator(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush_pending()
            except DEFERRABLE:
                log.debug("Redis invalidations deferred: Redis unavailable")
            except Exception:
                log.exception("Redis invalidation failed")

    def realtime_stores(
        self, entry_type: Callable[..., E], grant_type: type[G], *, presence_ttl: float
    ) -> tuple[RedisPresence[E] | None, RedisTicketStore[G] | None]:
        """Presence and connection tickets shared by every node (``None``: one node)."""
        if self.redis is None or self.options is None:
            return None, None
        return (
            RedisPresence(self.redis, self.options, entry_type=entry_type, ttl=presence_ttl),
            RedisTicketStore(self.redis, self.options, grant_type=grant_type),
        )

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._register_gauges()
        if self.redis is not None and self.options is not None:
            state = await _probe(self.redis.ping)
            if not state["ok"]:
                # Said once at start, by URL and cause; /readyz keeps saying it.
                log.warning(
                    "Redis at %s is unreachable (%s): answering 503 where it is needed "
                    "until it returns",
                    masked_url(self.options.url),
                    state.get("error"),
                )
        if self.redis is not None:
            self._tasks = [
                asyncio.create_task(self._heartbeat(), name="watchword-heartbeat"),
                asyncio.create_task(self._invalidator(), name="watchword-invalidator"),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.redis is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self.redis.hdel(self._nodes_key, self.node_id)
        await self.close()

    async def close(self) -> None:
        """Release the Redis pools (a CLI run, which never starts the bus, stops here)."""
        if isinstance(self._bus, RedisBus):
            await self._bus.close()
        for client in self._probe_clients.values():
            with contextlib.suppress(*REDIS_FAILURES):
                await client.aclose()
        self._probe_clients.clear()
        if self.redis is not None:
            await self.redis.aclose()

    @property
    def node_id(self) -> str:
        return self._control.node_id if self._control else "unattached"

    @property
    def _nodes_key(self) -> str:
        assert self.options is not None
        return self.options.key("nodes")

    def _node_record(self) -> str:
        return json.dumps(
            {
                "address": self.address,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "seen_at": time.time(),
                "bus": bool(self._bus and self._bus.healthy),
                "issuer": self.settings.issuer,
                "key": self.key_fingerprint,
            }
        )

    async def _heartbeat(self) -> None:
        assert self.redis is not None
        while True:
            try:
                await self.redis.hset(self._nodes_key, self.node_id, self._node_record())
                if self._pending_jtis or (self.session_cache and self.session_cache.pending):
                    self._wake.set()
            except REDIS_FAILURES:
                log.debug("heartbeat: Redis unavailable")
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def _register_gauges(self) -> None:
        cluster = self

        def redis_in_use() -> float:
            return float(pool_in_use(cluster.redis)[0]) if cluster.redis is not None else 0.0

        def redis_max() -> float:
            return float(pool_in_use(cluster.redis)[1]) if cluster.redis is not None else 0.0

        def hit_ratio() -> float:
            cache = cluster._local_cache
            if cache is None or cache.hits + cache.misses == 0:
                return 0.0
            return cache.hits / (cache.hits + cache.misses)

        REDIS_POOL_IN_USE.set_function(redis_in_use)
        REDIS_POOL_MAX.set_function(redis_max)
        SESSION_CACHE_HIT_RATIO.set_function(hit_ratio)
        BUS_UP.set_function(lambda: 1.0 if cluster._bus and cluster._bus.healthy else 0.0)
        DB_POOL_IN_USE.set_function(lambda: float(cluster._db_pool()[0]))
        DB_POOL_SIZE.set_function(lambda: float(cluster._db_pool()[1]))

    def _db_pool(self) -> tuple[int, int]:
        engine = getattr(self._db, "engine", None)
        pool = getattr(getattr(engine, "sync_engine", None), "pool", None)
        checked_out = getattr(pool, "checkedout", None)
        size = getattr(pool, "size", None)
        if not callable(checked_out) or not callable(size):
            return 0, 0
        return int(checked_out()), int(size())

    # -- health -----------------------------------------------------------------------------

    async def probe_redis(self) -> dict[str, Any]:
        """Redis reachability and pool use; ``required`` is false when sessions fall back."""
        if self.redis is None:
            return {"ok": True, "configured": False, "required": False}
        if isinstance(self.redis, RedisCluster):
            state = await self._probe_masters(self.redis)
        else:
            state = await _probe(self.redis.ping)
            state["mode"] = "single"
        state["url"] = masked_url(self.options.url) if self.options else None
        in_use, allowed = pool_in_use(self.redis)
        state["pool"] = {"in_use": in_use, "max": allowed}
        state["fallback"] = self.settings.redis_fallback
        state["required"] = self.settings.redis_fallback == "none"
        return state

    async def _probe_masters(self, cluster: RedisCluster) -> dict[str, Any]:
        """Each master of the cluster, the slots it serves and whether it answers. Not ok
        while any master is missing: requests whose keys live there answer 503."""
        assert self.options is not None
        try:
            await cluster.nodes_manager.initialize()  # the slot map as the cluster says now
        except REDIS_FAILURES as exc:
            return {"ok": False, "mode": "cluster", "error": f"{type(exc).__name__}: {exc}"}
        ranges: dict[str, list[list[int]]] = {}
        for slot in sorted(cluster.nodes_manager.slots_cache):
            owners = cluster.nodes_manager.slots_cache[slot]
            if not owners:
                continue
            spans = ranges.setdefault(owners[0].name, [])
            if spans and spans[-1][1] == slot - 1:
                spans[-1][1] = slot
            else:
                spans.append([slot, slot])
        masters: list[dict[str, Any]] = []
        for node in sorted(cluster.get_primaries(), key=lambda n: n.name):
            client = self._probe_clients.get(node.name)
            if client is None:
                client = node_client(self.options, node.host, int(node.port))
                self._probe_clients[node.name] = client
            spans = ranges.get(node.name, [])
            entry: dict[str, Any] = {
                "node": node.name,
                "slots": ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "-",
                "slot_count": sum(b - a + 1 for a, b in spans),
            }
            entry.update(await _probe(client.ping))
            masters.append(entry)
        served = sum(m["slot_count"] for m in masters if m["ok"])
        down = [m for m in masters if not m["ok"]]
        state: dict[str, Any] = {
            "ok": bool(masters) and not down and served == CLUSTER_SLOTS,
            "mode": "cluster",
            "masters": masters,
            "slots_served": served,
        }
        if down:
            state["error"] = "; ".join(
                f"master {m['node']} (slots {m['slots']}) unreachable: {m.get('error')}"
                for m in down
            )
        elif served != CLUSTER_SLOTS:
            state["error"] = f"only {served} of {CLUSTER_SLOTS} slots are served"
        return state

    def bus_state(self) -> dict[str, Any]:
        bus = self._bus
        state: dict[str, Any] = {"ok": bool(bus and bus.healthy), "kind": "local"}
        if isinstance(bus, RedisBus):
            state.update(
                kind="redis",
                reconnects=bus.reconnects,
                error=bus.last_error,
                channels=bus.channels,
                servers=bus.servers,
                required=self.settings.redis_fallback == "none",
            )
        return state

    def node_view(self) -> dict[str, Any]:
        node: dict[str, Any] = {
            "id": self.node_id,
            "address": self.address,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }
        if self._local_cache is not None:
            lookups = self._local_cache.hits + self._local_cache.misses
            node["session_cache"] = {
                "entries": len(self._local_cache),
                "hit_ratio": round(self._local_cache.hits / lookups, 4) if lookups else None,
            }
        if self._control is not None:
            node["revoked_sessions"] = len(self._control.revoked)
            node["control_cursor"] = self._control.cursor
        if self.session_cache is not None:
            node["deferred_invalidations"] = len(self.session_cache.pending)
        in_use, size = self._db_pool()
        node["database_pool"] = {"in_use": in_use, "size": size}
        return node

    async def view(self) -> dict[str, Any]:
        """This node, and the nodes it can see through Redis."""
        result: dict[str, Any] = {"node": self.node_view(), "nodes": []}
        if self.redis is not None:
            try:
                result["nodes"] = await self.nodes()
            except REDIS_FAILURES as exc:
                result["nodes_error"] = f"{type(exc).__name__}: {exc}"
        return result

    async def check(self) -> dict[str, Any]:
        """Each dependency's state and this node's view of the cluster."""
        deps: dict[str, dict[str, Any]] = {
            "database": await _probe(self._db.ping if self._db else None),
            "redis": await self.probe_redis(),
        }
        control = self._control
        deps["control_feed"] = {
            "ok": bool(control and control.feed_healthy),
            "cursor": control.cursor if control else 0,
        }
        view = await self.view()
        deps["agreement"] = agreement(view["nodes"], self.settings.issuer, self.key_fingerprint)
        ok = all(bool(d["ok"]) or not d.get("required", True) for d in deps.values())
        return {"ok": ok, "dependencies": deps, **view}

    async def nodes(self) -> list[dict[str, Any]]:
        """Nodes that sent a heartbeat recently (``alive``) or within the hour."""
        if self.redis is None:
            return []
        raw = await self.redis.hgetall(self._nodes_key)
        now = time.time()
        found: list[dict[str, Any]] = []
        forget: list[str] = []
        for key, value in raw.items():
            node_id = key.decode() if isinstance(key, bytes) else str(key)
            try:
                record = json.loads(value)
                seen = float(record["seen_at"])
            except (ValueError, KeyError, TypeError):
                forget.append(node_id)
                continue
            if now - seen > NODE_FORGET_AFTER:
                forget.append(node_id)
                continue
            found.append(
                {
                    "id": node_id,
                    "address": record.get("address"),
                    "pid": record.get("pid"),
                    "alive": now - seen <= NODE_STALE_AFTER,
                    "seen_seconds_ago": round(now - seen, 1),
                    "bus": bool(record.get("bus")),
                    "issuer": record.get("issuer"),
                    "key": record.get("key"),
                    "self": node_id == self.node_id,
                }
            )
        if forget:
            await self.redis.hdel(self._nodes_key, *forget)
        return sorted(found, key=lambda n: str(n["id"]))


def agreement(nodes: list[dict[str, Any]], issuer: str, key: str) -> dict[str, Any]:
    """Do the live nodes share this node's master key and issuer? Tokens and cookies of one
    node are refused by a node that differs."""
    alive = [n for n in nodes if n.get("alive")]
    issuers = {str(n.get("issuer")) for n in alive} | {issuer}
    keys = {str(n.get("key")) for n in alive} | {key}
    problems = []
    if len(keys) > 1:
        problems.append("nodes run with different master keys (WATCHWORD_SECRET_KEY)")
    if len(issuers) > 1:
        problems.append(
            "nodes have different issuers: set the same WATCHWORD_PUBLIC_URL on every node"
        )
    state: dict[str, Any] = {"ok": not problems, "issuer": issuer, "nodes": len(alive)}
    if problems:
        state["error"] = "; ".join(problems)
    return state


async def _probe(ping: Callable[[], Awaitable[Any]] | None) -> dict[str, Any]:
    if ping is None:
        return {"ok": False, "error": "not configured"}
    started = time.perf_counter()
    try:
        await ping()
    except StoreUnavailable as exc:
        return {"ok": False, "error": exc.message}
    except REDIS_FAILURES as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


__all__ = ["Cluster", "make_bus", "rate_limit_storage", "redis_options"]
