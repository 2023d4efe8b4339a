"""One Redis client per node, with limits, timeouts and bounded retries: one server
(``redis://``, ``rediss://``, ``unix://``) or a Redis Cluster (``redis+cluster://``,
``rediss+cluster://``, several seed ``host:port`` separated by commas).

Key layout (the same on one server and on a cluster, so there is one code path): every key
is ``{prefix}:<kind>:{<entity>}[:<part>]`` with the entity (a session id, a user id, a token
id...) in braces. On a cluster the braces are the hash tag: the keys one Lua script or one
transaction touches share an entity, so they share a slot, and different entities spread over
every master. Bus channels are ``{prefix}:bus:<name>`` (sharded pub/sub places each on the
master owning its slot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterUnreachableError, RedisError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a failed Redis call can raise: driver errors and the OS errors under them, and on a
# cluster a slot nobody serves or no member reachable (not RedisError subclasses).
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    RedisError,
    OSError,
    TimeoutError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)

# Either client answers the commands Watchword uses (single-key commands, scripts and
# transactions over keys of one entity, SPUBLISH).
RedisClient: TypeAlias = Redis | RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """What a ``redis+cluster://`` URL names: seed nodes, credentials and TLS."""

    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    """``redis+cluster://[user:password@]host:port[,host:port...][/0]``; raises ValueError."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError("a cluster URL starts with redis+cluster:// or rediss+cluster://")
    rest, question, query = rest.partition("?")
    if question and query:
        raise ValueError("a cluster URL takes no options after '?'")
    creds, _, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    seeds: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"cluster seed {item.strip()!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    username: str | None = None
    password: str | None = None
    if creds:
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return ClusterAddress(tuple(seeds), username, password, scheme.lower() == "rediss+cluster")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    url: str
    prefix: str = "watchword"
    max_connections: int = 64
    socket_timeout: float = 2.0
    connect_timeout: float = 2.0
    health_check_interval: float = 10.0

    @property
    def cluster(self) -> bool:
        return is_cluster_url(self.url)

    def key(self, kind: str, entity: str | None = None, *parts: str) -> str:
        """``{prefix}:kind:{entity}:part``: the entity in braces is the key's hash tag."""
        if entity is None:
            return f"{self.prefix}:{kind}"
        return ":".join((f"{self.prefix}:{kind}:{{{entity}}}", *parts))

    def channel(self, name: str) -> str:
        return f"{self.prefix}:bus:{name}"


def _retry(retries: int) -> Retry:
    if retries:
        return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries)
    return Retry(NoBackoff(), 0)


def _connection_kwargs(options: RedisOptions, retries: int) -> dict[str, Any]:
    return {
        "max_connections": options.max_connections,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.connect_timeout,
        "health_check_interval": int(options.health_check_interval),
        "retry": _retry(retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "decode_responses": False,
    }


def pooled(url: str, options: RedisOptions, **kwargs: Any) -> BlockingConnectionPool:
    """A pool that, when every connection is busy, waits for one (up to the socket timeout)
    instead of failing: redis-py's default pool raises "Too many connections" at once, so a
    burst of more concurrent requests than the pool holds answered 503s on a healthy Redis."""
    return BlockingConnectionPool.from_url(url, timeout=options.socket_timeout, **kwargs)


def make_client(options: RedisOptions, *, retries: int = 2) -> RedisClient:
    """A pooled client. Commands retry twice with jittered backoff, then raise.

    On a cluster, ``require_full_coverage=False``: with one master gone the client keeps
    serving the slots of the others (their keys work; the lost master's raise, and the
    callers answer 503 for what lived there).
    """
    if not options.cluster:
        return Redis.from_pool(pooled(options.url, options, **_connection_kwargs(options, retries)))
    address = parse_cluster_url(options.url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.seeds],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        require_full_coverage=False,
        **_connection_kwargs(options, retries),
    )


def node_client(options: RedisOptions, host: str, port: int, *, retries: int = 0) -> Redis:
    """A client of one cluster member (the bus subscribes on the master owning a channel)."""
    kwargs = _connection_kwargs(options, retries)
    if not options.cluster:
        return Redis.from_pool(pooled(options.url, options, **kwargs))
    address = parse_cluster_url(options.url)
    return Redis(
        host=host,
        port=port,
        username=address.username,
        password=address.password,
        ssl=address.tls,
        **kwargs,
    )


def pool_in_use(client: RedisClient) -> tuple[int, int]:
    """(connections in use, connections allowed) of a client's pools (every cluster node)."""
    if isinstance(client, RedisCluster):
        in_use = allowed = 0
        for node in client.get_nodes():
            free = len(getattr(node, "_free", ()))
            opened = len(getattr(node, "_connections", ()))
            in_use += max(0, opened - free)
            allowed += int(getattr(node, "max_connections", 0) or 0)
        return in_use, allowed
    pool = client.connection_pool
    in_use = len(getattr(pool, "_in_use_connections", ()))
    return in_use, int(getattr(pool, "max_connections", 0) or 0)
