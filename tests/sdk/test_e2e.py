"""The SDK against a real ``watchword serve`` process: tokens from WatchwordClient verify in
this process, and a revocation on the server reaches this process's Verifier over SSE."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.sdk.server import ServerProcess
from watchword.sdk import (
    AsyncWatchwordClient,
    InvalidToken,
    LoginRejected,
    RedisRevocationSource,
    RevocationFeedRefused,
    SSERevocationSource,
    TokenRevoked,
    Verifier,
    WatchwordClient,
)

pytestmark = pytest.mark.e2e

ADMIN = "admin@example.com"
USER = "bob@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("sdk-e2e")
    with ServerProcess(workdir) as process:
        process.create_user(ADMIN, "admin")  # the CLI, as an operator would
        response = httpx.post(
            f"{process.url}/v1/users", json={"email": USER, "password": PASSWORD}, timeout=30
        )
        assert response.status_code == 201, response.text
        yield process


@pytest.fixture(scope="module")
def feed_key(server: ServerProcess) -> Iterator[str]:
    """An API key holding revocations:read, made over HTTP by the admin's token session."""
    with WatchwordClient(server.url) as admin:
        admin.login(ADMIN, PASSWORD, device_name="sdk e2e admin")
        response = admin.post(
            "/v1/api-keys", json={"name": "sdk revocation feed", "scopes": "revocations:read"}
        )
        assert response.status_code == 201, response.text
        yield response.json()["key"]


@pytest.fixture
def verifier(server: ServerProcess, feed_key: str) -> Iterator[Verifier]:
    with Verifier(issuer=server.url, credential=feed_key, max_feed_staleness=60) as verifier:
        assert verifier.wait_for_feed(20), verifier.source.last_error  # type: ignore[union-attr]
        yield verifier


def wait_until_revoked(verifier: Verifier, token: str) -> None:
    """Polls the verifier for a bounded while; the assertion is on the outcome only."""
    for _ in range(2000):
        try:
            verifier.verify(token)
        except TokenRevoked:
            return
        time.sleep(0.005)
    raise AssertionError("the revocation never reached the verifier")


def test_logout_reaches_the_verifier(server: ServerProcess, verifier: Verifier) -> None:
    with WatchwordClient(server.url) as ww:
        tokens = ww.login(USER, PASSWORD, device_name="sdk e2e")
        verified = verifier.verify(tokens.access_token)
        assert verified.session_id == tokens.session_id
        assert verified.subject == ww.get("/v1/me").json()["user"]["id"]
        assert "profile" in verified.scopes
        ww.logout()
    wait_until_revoked(verifier, tokens.access_token)
    assert verifier.feed_staleness == 0.0


def test_deleting_one_session_revokes_only_its_tokens(
    server: ServerProcess, verifier: Verifier
) -> None:
    with WatchwordClient(server.url) as phone, WatchwordClient(server.url) as laptop:
        kept = phone.login(USER, PASSWORD, device_name="phone")
        doomed = laptop.login(USER, PASSWORD, device_name="laptop")
        assert verifier.verify(doomed.access_token)
        response = phone.delete(f"/v1/sessions/{doomed.session_id}")
        assert response.is_success, response.text
        wait_until_revoked(verifier, doomed.access_token)
        assert verifier.verify(kept.access_token).session_id == kept.session_id
        phone.logout()


def test_a_refreshed_token_verifies_and_the_session_still_revokes(
    server: ServerProcess, verifier: Verifier
) -> None:
    with WatchwordClient(server.url) as ww:
        first = ww.login(USER, PASSWORD)
        second = ww.refresh()
        assert second.refresh_token != first.refresh_token
        assert verifier.verify(second.access_token).session_id == first.session_id
        ww.logout()
    wait_until_revoked(verifier, second.access_token)
    wait_until_revoked(verifier, first.access_token)


def test_a_wrong_password_is_rejected_by_the_server(server: ServerProcess) -> None:
    with WatchwordClient(server.url) as ww, pytest.raises(LoginRejected) as caught:
        ww.login(USER, "not the password")
    assert caught.value.status_code == 401


def test_a_token_for_another_audience_is_refused(server: ServerProcess, feed_key: str) -> None:
    with WatchwordClient(server.url) as ww:
        tokens = ww.login(USER, PASSWORD)
        other = Verifier(issuer=server.url, audience="billing")
        with pytest.raises(InvalidToken, match="audience"):
            other.verify(tokens.access_token)
        other.close()
        ww.logout()


def test_a_refused_feed_credential_fails_closed(server: ServerProcess) -> None:
    with WatchwordClient(server.url) as ww:
        tokens = ww.login(USER, PASSWORD)
        # Refused at start, naming the cause (the first verify() says the same).
        with (
            pytest.raises(RevocationFeedRefused, match="HTTP 401"),
            Verifier(issuer=server.url, credential="ww_live_not_a_key", max_feed_staleness=60),
        ):
            pass
        verifier = Verifier(issuer=server.url, credential="ww_live_not_a_key")
        with pytest.raises(RevocationFeedRefused, match="revocations:read"):
            verifier.verify(tokens.access_token)
        assert verifier.feed_staleness == math.inf
        verifier.close()
        ww.logout()


async def test_the_async_side_end_to_end(server: ServerProcess, feed_key: str) -> None:
    async with (
        Verifier(issuer=server.url, credential=feed_key, max_feed_staleness=60) as verifier,
        AsyncWatchwordClient(server.url) as ww,
    ):
        assert await verifier.await_feed(20)
        tokens = await ww.login(USER, PASSWORD)
        assert (await verifier.averify(tokens.access_token)).session_id == tokens.session_id
        await ww.logout()
        for _ in range(2000):
            try:
                await verifier.averify(tokens.access_token)
            except TokenRevoked:
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("the revocation never reached the async verifier")


@pytest.mark.redis
def test_a_redis_sharing_service_gets_revocations_from_redis(
    tmp_path: Path, redis_url: str
) -> None:
    prefix = f"sdk-e2e-{uuid.uuid4().hex[:8]}"
    process = ServerProcess(tmp_path)
    process.env.update(WATCHWORD_REDIS_URL=redis_url, WATCHWORD_REDIS_PREFIX=prefix)
    with process:
        response = httpx.post(
            f"{process.url}/v1/users", json={"email": USER, "password": PASSWORD}, timeout=30
        )
        assert response.status_code == 201, response.text
        with (
            Verifier(
                issuer=process.url,
                revocations=RedisRevocationSource(redis_url, prefix=prefix),
                max_feed_staleness=30,
            ) as verifier,
            WatchwordClient(process.url) as ww,
        ):
            assert verifier.wait_for_feed(20)
            tokens = ww.login(USER, PASSWORD)
            assert verifier.verify(tokens.access_token).session_id == tokens.session_id
            ww.logout()
            wait_until_revoked(verifier, tokens.access_token)


def test_the_feed_survives_a_server_restart_and_sees_what_happened_meanwhile(
    tmp_path: Path,
) -> None:
    process = ServerProcess(tmp_path)
    with process:
        process.create_user(ADMIN, "admin")
        with WatchwordClient(process.url) as admin:
            admin.login(ADMIN, PASSWORD)
            created = admin.post(
                "/v1/api-keys", json={"name": "feed", "scopes": "revocations:read"}
            )
            assert created.status_code == 201, created.text
            with WatchwordClient(process.url) as victim:
                tokens = victim.login(ADMIN, PASSWORD, device_name="victim")
            # A short backoff cap, so the reconnect follows the restart closely.
            source = SSERevocationSource(
                f"{process.url}/v1/revocations/stream",
                created.json()["key"],
                backoff_max=0.5,
            )
            with Verifier(
                issuer=process.url, revocations=source, max_feed_staleness=600
            ) as verifier:
                assert verifier.wait_for_feed(20)
                assert verifier.verify(tokens.access_token)
                process.stop()
                for _ in range(2000):
                    if not verifier.revocations.healthy:
                        break
                    time.sleep(0.005)
                assert not verifier.revocations.healthy
                # Revoked from the command line while no server runs.
                process.cli("sessions", "revoke", tokens.session_id)
                process.start()
                wait_until_revoked(verifier, tokens.access_token)
                assert verifier.revocations.healthy
                assert verifier.source.connections >= 2  # type: ignore[union-attr]
