"""One Redis connection pool per node, with limits, timeouts and bounded retries.

Every key of a deployment starts with ``{prefix}`` in braces: on Redis Cluster the hash tag
keeps the keys one Lua script touches in one slot, so multi-key steps stay atomic. Bus channels
are not tagged (sharded pub/sub spreads them over the shards).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a failed Redis call can raise: driver errors and the OS errors under them.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    url: str
    prefix: str = "watchword"
    max_connections: int = 64
    socket_timeout: float = 2.0
    connect_timeout: float = 2.0
    health_check_interval: float = 10.0

    def key(self, *parts: str) -> str:
        """A key of this deployment: ``{prefix}:part:part``."""
        return ":".join((f"{{{self.prefix}}}", *parts))

    def channel(self, name: str) -> str:
        return f"{self.prefix}:bus:{name}"


def make_client(options: RedisOptions, *, retries: int = 2) -> Redis:
    """A pooled client. Commands retry twice with jittered backoff, then raise."""
    retry = (
        Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries)
        if retries
        else Retry(NoBackoff(), 0)
    )
    return Redis.from_url(
        options.url,
        max_connections=options.max_connections,
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.connect_timeout,
        health_check_interval=int(options.health_check_interval),
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=False,
    )


def pool_in_use(client: Redis) -> tuple[int, int]:
    """(connections in use, connections allowed) of a client's pool."""
    pool = client.connection_pool
    in_use = len(getattr(pool, "_in_use_connections", ()))
    return in_use, int(getattr(pool, "max_connections", 0) or 0)
