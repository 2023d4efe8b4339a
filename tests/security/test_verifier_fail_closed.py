"""The SDK ``Verifier`` fails closed against a real ``watchword serve``: a refused feed
credential raises at start and at ``verify`` naming the cause, a feed down longer than its
staleness bound makes ``verify`` raise, and only ``fail_open=True`` accepts (with a warning)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.sdk.server import ServerProcess
from watchword.sdk import (
    RevocationFeedRefused,
    RevocationFeedStale,
    SSERevocationSource,
    Verifier,
    WatchwordClient,
)

pytestmark = pytest.mark.e2e

ADMIN = "admin@example.com"
USER = "carol@example.com"
WRONG_KEY = "ww_live_not_a_key"


def register(server: ServerProcess, email: str) -> None:
    response = httpx.post(
        f"{server.url}/v1/users", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 201, response.text


def api_key(server: ServerProcess, email: str, scopes: str) -> str:
    with WatchwordClient(server.url) as owner:
        owner.login(email, PASSWORD, device_name="key maker")
        response = owner.post("/v1/api-keys", json={"name": "feed", "scopes": scopes})
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        owner.logout()
        return key


def access_token(server: ServerProcess, email: str = USER) -> str:
    with WatchwordClient(server.url) as ww:
        token: str = ww.login(email, PASSWORD, device_name="service caller").access_token
        return token


def until(condition: Callable[[], bool], within: float = 20.0) -> bool:
    """Polls for a bounded while; the assertions are on outcomes, never on durations."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("verifier-fail-closed")) as process:
        process.create_user(ADMIN, "admin")
        register(process, USER)
        yield process


@pytest.mark.parametrize(
    ("credential", "cause"),
    [
        (lambda server: WRONG_KEY, "HTTP 401"),
        (lambda server: api_key(server, USER, "profile"), "HTTP 403"),
    ],
    ids=["wrong-key", "key-without-revocations-read"],
)
def test_a_refused_feed_credential_raises_at_start_naming_the_cause(
    server: ServerProcess, credential: Callable[[ServerProcess], str], cause: str
) -> None:
    verifier = Verifier(issuer=server.url, credential=credential(server), feed_wait=20)
    with pytest.raises(RevocationFeedRefused, match=cause) as refused:
        verifier.start()
    assert "revocations:read" in refused.value.description
    verifier.close()


@pytest.mark.parametrize(
    ("credential", "cause"),
    [
        (lambda server: WRONG_KEY, "HTTP 401"),
        (lambda server: api_key(server, USER, "profile"), "HTTP 403"),
    ],
    ids=["wrong-key", "key-without-revocations-read"],
)
def test_a_refused_feed_credential_raises_at_every_verify(
    server: ServerProcess, credential: Callable[[ServerProcess], str], cause: str
) -> None:
    token = access_token(server)
    verifier = Verifier(issuer=server.url, credential=credential(server), feed_wait=20)
    try:
        for _ in range(2):  # the first call, and every call after it
            with pytest.raises(RevocationFeedRefused, match=cause):
                verifier.verify(token)
    finally:
        verifier.close()


def test_the_readme_example_with_a_wrong_key_refuses_a_signed_out_token(
    server: ServerProcess,
) -> None:
    """The reported case: a wrong key no longer means a logged-out token keeps passing."""
    with WatchwordClient(server.url) as ww:
        token = ww.login(USER, PASSWORD, device_name="signed out").access_token
        ww.logout()
    verifier = Verifier(issuer=server.url, credential=WRONG_KEY, feed_wait=20)
    try:
        with pytest.raises(RevocationFeedRefused):
            verifier.verify(token)
    finally:
        verifier.close()


def test_fail_open_accepts_with_a_refused_feed_and_says_so(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    token = access_token(server)
    caplog.set_level(logging.WARNING, logger="watchword.sdk")
    with Verifier(
        issuer=server.url, credential=WRONG_KEY, fail_open=True, feed_wait=20
    ) as verifier:
        verifier.start()  # no raise: failing open was asked for
        assert verifier.verify(token).subject
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fail_open=True" in w and "refused" in w for w in warnings), warnings


def test_a_feed_down_longer_than_its_bound_makes_verify_raise_unless_failing_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = ServerProcess(tmp_path)
    with process:
        process.create_user(ADMIN, "admin")
        feed_key = api_key(process, ADMIN, "revocations:read")
        token = access_token(process, ADMIN)

        def source() -> SSERevocationSource:
            return SSERevocationSource(
                f"{process.url}/v1/revocations/stream", feed_key, backoff_max=0.5
            )

        closed = Verifier(issuer=process.url, revocations=source(), max_feed_staleness=1)
        opened = Verifier(
            issuer=process.url, revocations=source(), max_feed_staleness=1, fail_open=True
        )
        try:
            closed.start()
            opened.start()
            assert closed.wait_for_feed(20) and opened.wait_for_feed(20)
            assert closed.verify(token).subject == opened.verify(token).subject
            process.stop()

            def refused_as_stale() -> bool:
                try:
                    closed.verify(token)  # served from the cache until the feed is stale
                except RevocationFeedStale:
                    return True
                return False

            assert until(refused_as_stale), "a stale feed never made verify() raise"
            with pytest.raises(RevocationFeedStale, match="down for"):
                closed.verify(token)
            caplog.set_level(logging.WARNING, logger="watchword.sdk")
            assert until(lambda: opened.feed_staleness is not None and opened.feed_staleness > 1)
            assert opened.verify(token).subject  # accepted, on what it last knew
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("fail_open=True" in w for w in warnings), warnings
        finally:
            closed.close()
            opened.close()
