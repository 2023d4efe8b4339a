"""The revocation feed: snapshot and events reach the verifier, resume, staleness, fail closed."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from tests.sdk.feed import AsyncFeed, ThreadFeed, revoked, snapshot
from tests.sdk.issuer import ISSUER, FakeIssuer
from watchword.sdk import (
    RevocationFeedRefused,
    RevocationFeedStale,
    RevocationList,
    SSERevocationSource,
    TokenRevoked,
    Verifier,
)

STREAM = f"{ISSUER}/v1/revocations/stream"


def source(issuer: FakeIssuer, credential: Any = "feed-key") -> SSERevocationSource:
    return SSERevocationSource(
        STREAM,
        credential,
        http_client=httpx.Client(transport=issuer.transport),
        async_http_client=httpx.AsyncClient(transport=issuer.transport),
        backoff_initial=0.001,
        backoff_max=0.004,
    )


@pytest.fixture
def feed(issuer: FakeIssuer) -> AsyncFeed:
    fake = AsyncFeed()
    issuer.routes["/v1/revocations/stream"] = fake.handler
    return fake


@pytest.fixture
async def make(issuer: FakeIssuer) -> AsyncIterator[Callable[..., Awaitable[Verifier]]]:
    made: list[Verifier] = []

    async def build(**options: Any) -> Verifier:
        options.setdefault("revocations", source(issuer))
        # These tests feed the snapshot themselves, after start: start must not wait for it.
        options.setdefault("feed_wait", 0)
        verifier = Verifier(
            issuer=ISSUER,
            http_client=httpx.Client(transport=issuer.transport),
            async_http_client=httpx.AsyncClient(transport=issuer.transport),
            clock=issuer.clock,
            **options,
        )
        made.append(verifier)
        await verifier.astart()
        return verifier

    yield build
    for verifier in made:
        await verifier.aclose()


def revoked_now(verifier: Verifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except TokenRevoked:
        return True
    return False


async def test_a_revoked_session_is_refused_after_the_event(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make()
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot({"old-session": issuer.clock() + 600}, cursor=3))
    assert await verifier.await_feed(5)
    assert verifier.feed_staleness == 0.0
    with pytest.raises(TokenRevoked, match="session has been revoked"):
        await verifier.averify(issuer.token(sid="old-session"))

    token = issuer.token(sid="session-1")
    other = issuer.token(sid="session-2")
    assert await verifier.averify(token)  # now in the verified-token cache
    feed.send(revoked("session", "session-1", issuer.clock() + 600, 4))
    await eventually(lambda: revoked_now(verifier, token), "the cached token is refused")
    assert await verifier.averify(other)
    assert feed.requests[0].headers["authorization"] == "Bearer feed-key"
    assert feed.requests[0].headers["accept"] == "text/event-stream"


async def test_a_revoked_jti_is_refused(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make()
    await eventually(lambda: bool(feed.streams), "the feed connects")
    token = issuer.token(jti="jti-1")
    feed.send(snapshot(jtis={"jti-0": issuer.clock() + 60}, cursor=1))
    assert await verifier.await_feed(5)
    assert await verifier.averify(token)
    feed.send(revoked("jti", "jti-1", issuer.clock() + 600, 2))
    await eventually(lambda: revoked_now(verifier, token), "the token is refused")
    with pytest.raises(TokenRevoked, match="token has been revoked"):
        await verifier.averify(token)
    with pytest.raises(TokenRevoked):
        await verifier.averify(issuer.token(jti="jti-0"))


async def test_the_feed_resumes_with_last_event_id(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make()
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot(cursor=10))
    feed.send(revoked("session", "s-11", issuer.clock() + 600, 11))
    await eventually(lambda: "s-11" in verifier.revocations.sessions, "event 11 applied")
    feed.end()
    await eventually(lambda: len(feed.streams) == 2, "the feed reconnects")
    assert feed.requests[0].headers.get("last-event-id") is None
    assert feed.requests[1].headers["last-event-id"] == "11"
    await eventually(lambda: verifier.revocations.healthy, "in sync without a new snapshot")
    feed.send(revoked("session", "s-12", issuer.clock() + 600, 12))
    await eventually(lambda: "s-12" in verifier.revocations.sessions, "the replay applied")
    assert "s-11" in verifier.revocations.sessions  # nothing forgotten across reconnects


async def test_an_unreadable_event_restarts_from_a_snapshot(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make()
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot(cursor=5))
    await eventually(lambda: verifier.revocations.healthy, "synced")
    feed.send(b"event: revoked\nid: 6\ndata: {not json\n\n")
    await eventually(lambda: len(feed.streams) == 2, "the feed reconnects")
    assert feed.requests[1].headers.get("last-event-id") is None
    for bad in (
        b'event: revoked\ndata: {"kind": "user", "id": "x", "until": 1}\n\n',
        b'event: revoked\ndata: {"kind": "session", "id": "x", "until": "soon"}\n\n',
        b'event: snapshot\ndata: {"sessions": [], "cursor": 1}\n\n',
        b'event: snapshot\ndata: {"sessions": {}, "cursor": "1"}\n\n',
        b"event: snapshot\ndata: [1]\n\n",
    ):
        count = len(feed.streams)
        feed.send(snapshot(cursor=7))
        feed.send(bad)
        await eventually(lambda count=count: len(feed.streams) == count + 1, "reconnects")
        assert feed.requests[-1].headers.get("last-event-id") is None


async def test_unknown_events_and_pings_are_ignored(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make()
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot(cursor=1))
    feed.send(b": ping\n\nevent: hello\ndata: whatever\n\n")
    feed.send(revoked("session", "s-2", issuer.clock() + 60, 2))
    await eventually(lambda: "s-2" in verifier.revocations.sessions, "applied")
    assert len(feed.streams) == 1


async def test_a_refused_credential_keeps_the_feed_stale_and_fails_closed(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    feed.status = 401
    with pytest.raises(RevocationFeedRefused, match="HTTP 401"):
        await make(max_feed_staleness=60, feed_wait=5)
    verifier = await make(fail_open=True, feed_wait=5)  # failing open is explicit, only logged
    await eventually(lambda: len(feed.requests) >= 3, "retries")
    assert verifier.feed_staleness == math.inf
    assert verifier.source is not None
    assert "HTTP 401" in (verifier.source.last_error or "")  # type: ignore[attr-defined]
    assert await verifier.averify(issuer.token())


async def test_fails_closed_before_the_first_snapshot(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make(max_feed_staleness=30)
    with pytest.raises(RevocationFeedStale):
        await verifier.averify(issuer.token())
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot(cursor=1))
    assert await verifier.await_feed(5)
    assert await verifier.averify(issuer.token())


async def test_staleness_grows_while_the_feed_is_down_then_fails_closed(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    verifier = await make(max_feed_staleness=60)
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.send(snapshot(cursor=1))
    assert await verifier.await_feed(5)
    token = issuer.token()
    assert await verifier.averify(token)

    feed.status = 503
    feed.end()
    await eventually(lambda: not verifier.revocations.healthy, "the loss is noticed")
    issuer.clock.advance(59)
    assert verifier.feed_staleness == pytest.approx(59)
    assert await verifier.averify(token)  # cached, still checked, still within the bound
    issuer.clock.advance(2)
    with pytest.raises(RevocationFeedStale, match="for 61 s"):
        await verifier.averify(token)
    with pytest.raises(RevocationFeedStale):
        verifier.verify(issuer.token())

    feed.status = 200
    await eventually(lambda: len(feed.streams) == 2, "the feed comes back")
    await eventually(lambda: verifier.revocations.healthy, "resumed with Last-Event-ID")
    assert verifier.feed_staleness == 0.0
    assert await verifier.averify(token)


async def test_with_fail_open_a_stale_feed_only_reports_staleness(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    feed.status = 500
    verifier = await make(fail_open=True, feed_wait=0)
    await eventually(lambda: len(feed.requests) >= 2, "retries")
    assert verifier.feed_staleness == math.inf
    assert await verifier.averify(issuer.token())


async def test_a_credential_callable_is_asked_at_every_connection(
    issuer: FakeIssuer, feed: AsyncFeed, make: Callable[..., Awaitable[Verifier]]
) -> None:
    credentials = iter(["first", "second", "third"])
    await make(revocations=source(issuer, credential=lambda: next(credentials)))
    await eventually(lambda: bool(feed.streams), "the feed connects")
    feed.end()
    await eventually(lambda: len(feed.streams) == 2, "the feed reconnects")
    assert [r.headers["authorization"] for r in feed.requests] == [
        "Bearer first",
        "Bearer second",
    ]


def test_the_thread_consumer_for_sync_apps(issuer: FakeIssuer) -> None:
    closing = threading.Event()
    feed = ThreadFeed(closing)
    issuer.routes["/v1/revocations/stream"] = feed.handler
    verifier = Verifier(
        issuer=ISSUER,
        http_client=httpx.Client(transport=issuer.transport),
        revocations=source(issuer),
        clock=issuer.clock,
        fail_open=True,  # the first call comes before the snapshot in this test
        feed_wait=0,
    )
    token = issuer.token(sid="s-1")
    assert verifier.verify(token)  # starts the thread on first use
    assert verifier._thread is not None and verifier._thread.is_alive()
    for _ in range(2000):
        if feed.streams:
            break
        threading.Event().wait(0.001)
    feed.send(snapshot(cursor=1))
    assert verifier.wait_for_feed(5)
    feed.send(revoked("session", "s-1", issuer.clock() + 600, 2))
    for _ in range(2000):
        if "s-1" in verifier.revocations.sessions:
            break
        threading.Event().wait(0.001)
    with pytest.raises(TokenRevoked):
        verifier.verify(token)
    closing.set()
    verifier.close()
    assert not verifier._thread.is_alive()


def test_the_revocation_list_forgets_what_can_no_longer_match() -> None:
    now = [1000.0]
    revocations = RevocationList(lambda: now[0], retention_slack=10)
    revocations.apply_snapshot({"a": 1100.0}, {"j": 1050.0})
    revocations.revoke("session", "b", 2000.0)
    revocations.revoke("session", "a", 1000.0)  # an older 'until' never shortens an entry
    assert revocations.revoked("a", "x") == "session"
    assert revocations.revoked(None, "j") == "token"
    now[0] = 1200.0
    revocations.revoke("jti", "k", 1300.0)
    assert set(revocations.sessions) == {"b"}
    assert set(revocations.jtis) == {"k"}
    assert revocations.revoked("a", "j") is None


def test_staleness_counts_from_the_last_sign_of_life() -> None:
    now = [1000.0]
    revocations = RevocationList(lambda: now[0])
    assert revocations.staleness == math.inf
    revocations.feed_up()
    now[0] += 100
    assert revocations.staleness == 0.0
    revocations.feed_down(silent_for=45)  # a read timeout: silent for 45 s already
    assert revocations.staleness == 45
    now[0] += 5
    assert revocations.staleness == 50
    revocations.feed_down(silent_for=0)  # a second loss report does not reset the count
    assert revocations.staleness == 50


def test_source_options_are_validated() -> None:
    with pytest.raises(ValueError):
        SSERevocationSource(STREAM, "k", read_timeout=0)
    with pytest.raises(ValueError):
        SSERevocationSource(STREAM, "k", backoff_initial=2, backoff_max=1)


async def test_the_feed_credential_never_reaches_the_logs(
    issuer: FakeIssuer,
    feed: AsyncFeed,
    make: Callable[..., Awaitable[Verifier]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    feed.status = 401
    with pytest.raises(RevocationFeedRefused):
        await make(revocations=source(issuer, credential="ww_live_secret_feed_key"), feed_wait=5)
    await eventually(lambda: len(feed.requests) >= 3, "retries")
    assert "HTTP 401" in caplog.text
    assert "ww_live_secret_feed_key" not in caplog.text
