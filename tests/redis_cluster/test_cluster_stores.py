"""The Redis adapters on a real 3-master Redis Cluster: keys of one entity share a slot (the
scripts and transactions run), entities spread over every master, and the bus follows each
channel to the master that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from limits import parse
from redis.asyncio.cluster import RedisCluster

from tests.cluster.conftest import eventually
from tests.redis_cluster.servers import RedisClusterServers
from watchword.bus.base import CONTROL
from watchword.bus.redis import RedisBus
from watchword.config import Settings
from watchword.domain import events
from watchword.domain.errors import StoreUnavailable
from watchword.domain.sessions import Session
from watchword.sdk import RedisRevocationSource
from watchword.services.cluster import rate_limit_storage
from watchword.services.ratelimit import RateLimiter
from watchword.stores.redis import RedisNonceStore, RedisOptions, make_client
from watchword.stores.redis.client import REDIS_FAILURES, parse_cluster_url
from watchword.stores.redis.realtime import RedisPresence
from watchword.stores.redis.revocations import RedisRevokedTokens
from watchword.stores.redis.sessions import RedisSessionCache
from watchword.web.realtime.presence import PresenceEntry

pytestmark = [pytest.mark.redis]


def options_for(servers: RedisClusterServers, **extra: Any) -> RedisOptions:
    return RedisOptions(url=servers.url, prefix=f"wwc-{uuid.uuid4().hex[:8]}", **extra)


def a_session(now: datetime) -> Session:
    return Session(
        id=uuid.uuid4().hex,
        user_id=uuid.uuid4().hex,
        secret_hash=uuid.uuid4().hex * 2,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=1),
        idle_timeout_seconds=600,
    )


def ids_on_every_master(
    servers: RedisClusterServers, options: RedisOptions, kind: str, count: int
) -> list[str]:
    """``count`` random entity ids whose ``kind`` keys land on every master: random ids alone
    leave a master empty now and then (12 ids miss one of 3 masters about 2% of the time)."""
    by_master: dict[int, list[str]] = {m.port: [] for m in servers.masters}
    while min(len(ids) for ids in by_master.values()) < -(-count // len(by_master)):
        entity = uuid.uuid4().hex
        by_master[servers.owner_of(options.key(kind, entity)).port].append(entity)
    mixed = [entity for group in zip(*by_master.values(), strict=False) for entity in group]
    return mixed[:count]


def keys_per_master(servers: RedisClusterServers, prefix: str) -> list[int]:
    counts = []
    for master in servers.masters:
        with redis.Redis(port=master.port, socket_timeout=2) as client:
            counts.append(sum(1 for _ in client.scan_iter(match=f"{prefix}:*", count=1000)))
    return counts


def test_cluster_urls_are_read_and_bad_ones_refused_by_name() -> None:
    address = parse_cluster_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    assert address.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (address.username, address.password, address.tls) == ("app", "s@cret", True)
    assert parse_cluster_url("redis+cluster://h:1").tls is False
    assert Settings(redis_url="redis+cluster://h:7000,h:7001").redis_url
    for bad, said in (
        ("redis+cluster://h", "is not host:port"),
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://h:7000?ssl=true", "no options"),
        ("cluster://h:7000", r"redis\+cluster://"),
    ):
        with pytest.raises(ValueError, match=said):
            Settings(redis_url=bad)


async def test_session_keys_share_a_slot_and_sessions_spread_over_every_master(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster)
    client = make_client(options)
    try:
        cache = RedisSessionCache(client, options, ttl=60)
        now = datetime.now(UTC)
        sessions = [a_session(now) for _ in range(24)]
        # put_session.lua and revoke_session.lua touch two keys each: a CROSSSLOT error here
        # would mean an entity's keys were split over slots.
        assert all([await cache.put(s, 7) for s in sessions])
        for s in sessions:
            got = await cache.get(str(s.secret_hash))
            assert got is not None and got[0].id == s.id and got[1] == 7
        assert all(n > 0 for n in keys_per_master(redis_cluster, options.prefix))
        revoked = sessions[0]
        await cache.revoke(revoked.id, revoked.expires_at.timestamp(), now.timestamp())
        assert await cache.get(str(revoked.secret_hash)) is None
        assert await cache.is_revoked(revoked.id)
        assert await cache.put(revoked, 8) is False  # the marker beside it refuses it
        # A pointer left by an older secret of the session leads nowhere.
        rotated = replace(sessions[1], secret_hash="f" * 64)
        assert await cache.put(rotated, 9)
        assert await cache.get(str(sessions[1].secret_hash)) is None
        assert await cache.get("f" * 64) is not None
    finally:
        await client.aclose()


async def test_presence_of_many_users_runs_its_transactions_on_the_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster)
    client = make_client(options)
    try:
        presence = RedisPresence(client, options, entry_type=PresenceEntry, ttl=30)
        users = ids_on_every_master(redis_cluster, options, "presence", 12)
        entries = [
            PresenceEntry(uuid.uuid4().hex, user, None, "laptop", "n1", "2026-01-01T00:00:00")
            for user in users
            for _ in range(2)
        ]
        for entry in entries:
            await presence.add(entry)
        await presence.touch(entries)
        assert [await presence.count(u) for u in users] == [2] * len(users)
        assert all(n > 0 for n in keys_per_master(redis_cluster, options.prefix))
        await presence.remove(entries[0])
        listed = await presence.list(users[0])
        assert [e.connection_id for e in listed] == [entries[1].connection_id]
    finally:
        await client.aclose()


async def test_nonces_are_accepted_once_across_nodes_on_the_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster)
    first, second = make_client(options), make_client(options)
    try:
        stores = [RedisNonceStore(first, options), RedisNonceStore(second, options)]
        results = await asyncio.gather(*(s.add_if_absent("k:nonce-a", 30) for s in stores * 5))
        assert sorted(results) == [False] * 9 + [True]
    finally:
        await first.aclose()
        await second.aclose()


async def test_rate_limit_budgets_are_shared_through_the_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    settings = Settings(redis_url=redis_cluster.url, redis_prefix=f"wwc-{uuid.uuid4().hex[:8]}")
    uri, storage_options = rate_limit_storage(settings)
    assert uri is not None and uri.startswith("async+redis+cluster://")
    one = RateLimiter(storage_uri=uri, storage_options=storage_options)
    two = RateLimiter(storage_uri=uri, storage_options=storage_options)
    item = parse("3/minute")
    spent = [await limiter.hit(item, "login-account", "a@example.com") for limiter in (one, two)]
    spent += [await one.hit(item, "login-account", "a@example.com")]
    assert spent == [0, 0, 0]
    assert await two.hit(item, "login-account", "a@example.com") > 0
    assert await two.hit(item, "login-account", "b@example.com") == 0


async def test_the_bus_listens_to_each_channel_on_the_master_that_owns_it(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster)
    buses = [RedisBus(options), RedisBus(options)]
    got: list[list[tuple[str, int]]] = [[], []]
    for n, bus in enumerate(buses):
        for channel in ("control", "realtime"):

            async def handler(message: dict[str, Any], n: int = n, c: str = channel) -> None:
                got[n].append((c, int(message["i"])))

            bus.subscribe(channel, handler)
        await bus.start()
    try:
        for bus in buses:
            assert await bus.wait_subscribed(10)
        for channel in ("control", "realtime"):
            owner = redis_cluster.owner_of(options.channel(channel))
            assert buses[0].servers[channel] == f"127.0.0.1:{owner.port}"
        for i in range(5):
            await buses[i % 2].publish("control", {"i": i})
            await buses[i % 2].publish("realtime", {"i": i})
        want = sorted([("control", i) for i in range(5)] + [("realtime", i) for i in range(5)])
        await eventually(lambda: _true(all(sorted(g) == want for g in got)))
        # In publish order per channel.
        assert [i for c, i in got[1] if c == "control"] == list(range(5))
    finally:
        for bus in buses:
            await bus.close()


async def test_losing_the_master_of_a_bus_channel_is_a_gap_and_the_bus_comes_back(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster, socket_timeout=0.5, connect_timeout=0.5)
    bus = RedisBus(options, max_backoff=0.2)
    gaps: list[bool] = []
    got: list[dict[str, Any]] = []

    async def on_gap() -> None:
        gaps.append(bus.healthy)

    async def handler(message: dict[str, Any]) -> None:
        got.append(message)

    bus.subscribe("control", handler)
    bus.on_gap(on_gap)
    await bus.start()
    owner = redis_cluster.owner_of(options.channel("control"))
    try:
        assert await bus.wait_subscribed(10)
        owner.kill()
        await eventually(lambda: _true(not bus.healthy))
        assert gaps == [False]  # reported as soon as the loss is seen
        with pytest.raises(StoreUnavailable):
            await bus.publish("control", {"type": "lost"})
        owner.start()
        redis_cluster.wait_healthy()
        await eventually(lambda: _true(bus.healthy and len(gaps) == 2), attempts=400)
        assert gaps == [False, True]
        await bus.publish("control", {"type": "after"})
        await eventually(lambda: _true(got == [{"type": "after"}]))
    finally:
        if owner.process is None:
            owner.start()
        redis_cluster.wait_healthy()
        await bus.close()


async def test_scripts_on_healthy_masters_run_while_another_master_is_down(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster, socket_timeout=0.5, connect_timeout=0.5)
    client = make_client(options)
    down = redis_cluster.masters[0]
    try:
        cache = RedisSessionCache(client, options, ttl=60)
        now = datetime.now(UTC)
        sessions = [a_session(now) for _ in range(12)]
        healthy = [
            s
            for s in sessions
            if down
            not in (
                redis_cluster.owner_of(options.key("sess", s.id)),
                redis_cluster.owner_of(options.key("secret", str(s.secret_hash))),
            )
        ]
        assert healthy
        assert isinstance(client, RedisCluster)
        await client.initialize()  # a running node knows the cluster before a master goes
        down.kill()
        for master in redis_cluster.masters[1:]:
            with redis.Redis(port=master.port, socket_timeout=2) as admin:
                admin.script_flush()  # as after a restart: no script is known there
        for session in healthy:
            assert await cache.put(session, 1)
            assert await cache.get(str(session.secret_hash)) is not None
        lost = next(s for s in sessions if s not in healthy)
        with pytest.raises(REDIS_FAILURES):
            await cache.put(lost, 1)
    finally:
        if down.process is None:
            down.start()
        redis_cluster.wait_healthy()
        await client.aclose()


async def _true(value: bool) -> bool:
    return value


class RecordingSink:
    """What a verifier's revocation state would receive from the source."""

    def __init__(self) -> None:
        self.sessions: dict[str, float] = {}
        self.jtis: dict[str, float] = {}
        self.up = False

    def apply_snapshot(self, sessions: Mapping[str, float], jtis: Mapping[str, float]) -> None:
        self.sessions.update(sessions)
        self.jtis.update(jtis)

    def revoke(self, kind: str, ident: str, until: float) -> None:
        (self.sessions if kind == "session" else self.jtis)[ident] = until

    def feed_up(self) -> None:
        self.up = True

    def feed_down(self, silent_for: float = 0.0) -> None:
        self.up = False


async def test_the_sdk_redis_source_reads_the_cluster_and_its_control_channel(
    redis_cluster: RedisClusterServers,
) -> None:
    options = options_for(redis_cluster)
    client = make_client(options)
    bus = RedisBus(options, node_id="n1")
    sink = RecordingSink()
    source = RedisRevocationSource(redis_cluster.url, prefix=options.prefix, backoff_max=0.5)
    task: asyncio.Task[None] | None = None
    try:
        now = time.time()
        # Markers of many sessions and tokens: spread over every master, all in the snapshot.
        cache = RedisSessionCache(client, options, ttl=60)
        revoked = [uuid.uuid4().hex for _ in range(12)]
        for sid in revoked:
            await cache.revoke(sid, now + 600, now)
        await RedisRevokedTokens(client, options).add("jti-old", now + 600, now)
        task = asyncio.create_task(source.arun(sink))
        await eventually(lambda: _true(sink.up))
        assert set(revoked) <= set(sink.sessions) and "jti-old" in sink.jtis
        await bus.publish(CONTROL, events.session_revoked("sid-live", "u1", "logout", now + 60))
        await eventually(lambda: _true("sid-live" in sink.sessions))
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.close()
        await client.aclose()
