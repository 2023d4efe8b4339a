"""RedisRevocationSource on the real Redis, fed by the server's own Redis bus and key layout."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from tests.helpers import eventually
from tests.sdk.issuer import ISSUER, FakeIssuer
from watchword.bus.base import CONTROL
from watchword.bus.redis import RedisBus
from watchword.domain import events
from watchword.domain.tokens import token_revoked
from watchword.sdk import RedisRevocationSource, RevocationFeedStale, TokenRevoked, Verifier
from watchword.stores.redis.client import RedisOptions, make_client
from watchword.stores.redis.revocations import RedisRevokedTokens

pytestmark = pytest.mark.redis


@pytest.fixture
def options(redis_url: str) -> RedisOptions:
    return RedisOptions(url=redis_url, prefix=f"sdktest-{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def redis_client(options: RedisOptions) -> AsyncIterator[aredis.Redis]:
    client = make_client(options)
    yield client
    async for key in client.scan_iter(match=f"{options.prefix}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def bus(options: RedisOptions) -> AsyncIterator[RedisBus]:
    """The server's bus, publishing only: its own subscription is not needed here."""
    bus = RedisBus(options, node_id="test-node")
    yield bus
    await bus.close()


@pytest.fixture
async def make(
    issuer: FakeIssuer, options: RedisOptions
) -> AsyncIterator[Callable[..., Awaitable[Verifier]]]:
    made: list[Verifier] = []

    async def build(**overrides: Any) -> Verifier:
        source_options: dict[str, Any] = {
            "prefix": options.prefix,
            "clock": issuer.clock,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        }
        source_options.update(overrides.pop("source", {}))
        url = overrides.pop("url", options.url)
        verifier = Verifier(
            issuer=ISSUER,
            http_client=httpx.Client(transport=issuer.transport),
            async_http_client=httpx.AsyncClient(transport=issuer.transport),
            revocations=RedisRevocationSource(url, **source_options),
            clock=issuer.clock,
            **overrides,
        )
        made.append(verifier)
        await verifier.astart()
        return verifier

    yield build
    for verifier in made:
        await verifier.aclose()


async def refused(verifier: Verifier, token: str) -> bool:
    try:
        await verifier.averify(token)
    except TokenRevoked:
        return True
    return False


async def test_the_snapshot_comes_from_the_servers_keys(
    issuer: FakeIssuer,
    options: RedisOptions,
    redis_client: aredis.Redis,
    make: Callable[..., Awaitable[Verifier]],
) -> None:
    now = issuer.clock()
    await redis_client.set(options.key("revoked", "sid-old"), b"1", px=600_000)
    await RedisRevokedTokens(redis_client, options).add("jti-old", now + 600, now)
    verifier = await make(max_feed_staleness=30)
    assert await verifier.await_feed(10)
    assert await refused(verifier, issuer.token(sid="sid-old"))
    assert await refused(verifier, issuer.token(jti="jti-old"))
    assert await verifier.averify(issuer.token(sid="sid-live"))
    until = verifier.revocations.sessions["sid-old"]
    assert now + 590 < until <= now + 600


async def test_bus_events_revoke_sessions_and_tokens(
    issuer: FakeIssuer, bus: RedisBus, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make(max_feed_staleness=30)
    assert await verifier.await_feed(10)
    session_token = issuer.token(sid="sid-1")
    jti_token = issuer.token(sid="sid-2", jti="jti-1")
    assert await verifier.averify(session_token)
    assert await verifier.averify(jti_token)
    expires = issuer.clock() + 3600
    await bus.publish(CONTROL, events.user_changed("u1", disabled=False))  # ignored
    await bus.publish(CONTROL, events.session_revoked("sid-1", "u1", "logout", expires))
    await bus.publish(CONTROL, token_revoked("jti-1", expires))
    await eventually(lambda: "jti-1" in verifier.revocations.jtis, "both events applied")
    assert await refused(verifier, session_token)
    assert await refused(verifier, jti_token)
    assert verifier.feed_staleness == 0.0


async def test_a_lost_connection_is_reopened_and_the_snapshot_reread(
    issuer: FakeIssuer,
    options: RedisOptions,
    redis_client: aredis.Redis,
    make: Callable[..., Awaitable[Verifier]],
) -> None:
    verifier = await make(max_feed_staleness=30)
    assert await verifier.await_feed(10)
    source = verifier.source
    assert isinstance(source, RedisRevocationSource)
    # Kill exactly our subscription (other tests share this Redis), and revoke meanwhile.
    clients = await redis_client.client_list()
    ours = [c["id"] for c in clients if c.get("name") == source.client_name]
    assert ours
    await redis_client.set(options.key("revoked", "sid-gap"), b"1", px=600_000)
    for client_id in ours:
        await redis_client.client_kill_filter(_id=client_id)
    await eventually(lambda: source.connections >= 2, "the source reconnects")
    await eventually(lambda: "sid-gap" in verifier.revocations.sessions, "the snapshot reread")
    await eventually(lambda: verifier.revocations.healthy, "up again")
    assert source.last_error is not None
    assert await refused(verifier, issuer.token(sid="sid-gap"))


async def test_an_unreachable_redis_fails_closed(
    issuer: FakeIssuer, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make(url="redis://127.0.0.1:1/0", max_feed_staleness=30)
    source = verifier.source
    assert isinstance(source, RedisRevocationSource)
    await eventually(lambda: source.failures >= 2, "connection attempts fail")
    assert verifier.feed_staleness == math.inf
    with pytest.raises(RevocationFeedStale):
        await verifier.averify(issuer.token())


def test_the_thread_side_runs_the_same_source(issuer: FakeIssuer, options: RedisOptions) -> None:
    async def publish() -> None:
        bus = RedisBus(options, node_id="thread-test")  # publishing only, never started
        await bus.publish(
            CONTROL, events.session_revoked("sid-t", "u1", "logout", issuer.clock() + 60)
        )
        await bus.close()

    verifier = Verifier(
        issuer=ISSUER,
        http_client=httpx.Client(transport=issuer.transport),
        revocations=RedisRevocationSource(
            options.url, prefix=options.prefix, clock=issuer.clock, backoff_initial=0.01
        ),
        clock=issuer.clock,
    )
    token = issuer.token(sid="sid-t")
    assert verifier.verify(token)  # starts the thread
    assert verifier.wait_for_feed(10)
    asyncio.run(publish())
    for _ in range(1000):
        if "sid-t" in verifier.revocations.sessions:
            break
        asyncio.run(asyncio.sleep(0.01))
    with pytest.raises(TokenRevoked):
        verifier.verify(token)
    verifier.close()
    assert verifier._thread is not None and not verifier._thread.is_alive()


def test_malformed_control_messages_are_dropped(issuer: FakeIssuer) -> None:
    source = RedisRevocationSource("redis://unused", clock=issuer.clock)
    applied: list[tuple[str, str, float]] = []

    class Sink:
        def apply_snapshot(self, sessions: Any, jtis: Any) -> None: ...
        def revoke(self, kind: str, ident: str, until: float) -> None:
            applied.append((kind, ident, until))

        def feed_up(self) -> None: ...
        def feed_down(self, silent_for: float = 0.0) -> None: ...

    sink = Sink()
    for data in (b"not json", b"[]", b'{"m": 5}', b'{"m": {"type": "session.revoked"}}'):
        source._apply(data, sink)
    assert applied == []
    now = issuer.clock()
    source._apply(b'{"m": {"type": "token.revoked", "jti": "j", "expires_at": 1e12}}', sink)
    source._apply(b'{"m": {"type": "session.revoked", "session_id": "s"}}', sink)
    assert applied == [("jti", "j", now + 86_400), ("session", "s", now + 86_400)]
