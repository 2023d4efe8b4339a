"""The revocation feed carries what a verifier needs beyond sessions and ``jti``s: a disabled
OAuth2 client (all its JWTs) and a disabled or deleted user. A ``Verifier`` following the SSE
feed of a real ``watchword serve`` refuses those tokens soon after the change on the server,
keeps accepting everyone else's, and still refuses them after it restarts (the snapshot)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.sdk.server import ServerProcess
from watchword.sdk import TokenRevoked, Verifier, WatchwordClient

pytestmark = pytest.mark.e2e

ADMIN = "admin@example.com"
WITHIN = 20.0  # seconds: a bound for a loaded machine, never asserted as a duration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("verifier-feed-subjects")) as process:
        process.create_user(ADMIN, "admin")
        yield process


@pytest.fixture(scope="module")
def feed_key(server: ServerProcess) -> str:
    with WatchwordClient(server.url) as admin:
        admin.login(ADMIN, PASSWORD, device_name="feed key maker")
        made = admin.post("/v1/api-keys", json={"name": "feed", "scopes": "revocations:read"})
        assert made.status_code == 201, made.text
        key: str = made.json()["key"]
        return key


@pytest.fixture
def verifier(server: ServerProcess, feed_key: str) -> Iterator[Verifier]:
    with Verifier(issuer=server.url, credential=feed_key, feed_wait=WITHIN) as verifier:
        assert verifier.wait_for_feed(WITHIN), verifier.source.last_error  # type: ignore[union-attr]
        yield verifier


def until(condition: Callable[[], bool], within: float = WITHIN) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def refused(verifier: Verifier, token: str, because: str) -> bool:
    try:
        verifier.verify(token)
    except TokenRevoked as exc:
        assert because in exc.description, exc.description
        return True
    return False


def snapshot(server: ServerProcess, feed_key: str) -> dict[str, Any]:
    """The first frame of a fresh feed connection, read off the wire."""
    headers = {"Authorization": f"Bearer {feed_key}", "Accept": "text/event-stream"}
    with httpx.stream(
        "GET", f"{server.url}/v1/revocations/stream", headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        event, data = None, ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data += line.partition(":")[2].strip()
            elif not line and event is not None:
                assert event == "snapshot", event
                frame: dict[str, Any] = json.loads(data)
                return frame
    raise AssertionError("the feed closed before its snapshot")


def new_user(server: ServerProcess) -> tuple[str, str, str]:
    """(email, user id, access token) of a fresh account signed in with a token session."""
    email = f"feed-{uuid.uuid4().hex[:10]}@example.com"
    made = httpx.post(
        f"{server.url}/v1/users", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert made.status_code == 201, made.text
    with WatchwordClient(server.url) as ww:
        tokens = ww.login(email, PASSWORD, device_name="feed subject")
        user_id = str(ww.get("/v1/me").json()["user"]["id"])
        return email, user_id, tokens.access_token


def new_client(server: ServerProcess, tokens: int = 1) -> tuple[str, str, str, list[str]]:
    """(client id, secret, first JWT access token, all tokens) of a fresh OAuth2 client."""
    made = json.loads(
        server.cli("clients", "create", "--name", "feed", "--scopes", "profile", "--json")
    )
    issued = []
    for _ in range(tokens):
        response = httpx.post(
            f"{server.url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(made["client_id"], made["client_secret"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        issued.append(str(response.json()["access_token"]))
    return str(made["client_id"]), str(made["client_secret"]), issued[0], issued


def admin_patch(server: ServerProcess, user_id: str, body: dict[str, Any]) -> None:
    with WatchwordClient(server.url) as admin:
        admin.login(ADMIN, PASSWORD, device_name="admin")
        response = admin.patch(f"/v1/admin/users/{user_id}", json=body)
        assert response.status_code == 200, response.text
        admin.logout()


def test_a_disabled_clients_jwts_are_refused_and_other_clients_pass(
    server: ServerProcess, feed_key: str, verifier: Verifier
) -> None:
    doomed_id, _, doomed, _ = new_client(server)
    kept_id, _, kept, _ = new_client(server)
    assert verifier.verify(doomed).client_id == doomed_id
    assert verifier.verify(kept).client_id == kept_id
    server.cli("clients", "disable", doomed_id)
    assert until(lambda: refused(verifier, doomed, "client has been disabled")), (
        "a disabled client's JWT still verifies"
    )
    assert verifier.verify(kept).client_id == kept_id
    assert doomed_id in snapshot(server, feed_key).get("clients", {})
    # A verifier started afterwards learns it from the snapshot alone.
    with Verifier(issuer=server.url, credential=feed_key, feed_wait=WITHIN) as restarted:
        assert restarted.wait_for_feed(WITHIN)
        assert refused(restarted, doomed, "client has been disabled")
        assert restarted.verify(kept).client_id == kept_id


def test_a_disabled_users_tokens_are_refused_and_other_users_pass(
    server: ServerProcess, feed_key: str, verifier: Verifier
) -> None:
    _, doomed_id, doomed = new_user(server)
    _, kept_id, kept = new_user(server)
    assert verifier.verify(doomed).subject == doomed_id
    admin_patch(server, doomed_id, {"disabled": True})
    assert until(lambda: refused(verifier, doomed, "revoked")), (
        "a disabled user's token still verifies"
    )
    assert verifier.verify(kept).subject == kept_id
    assert doomed_id in snapshot(server, feed_key).get("users", {})
    with Verifier(issuer=server.url, credential=feed_key, feed_wait=WITHIN) as restarted:
        assert restarted.wait_for_feed(WITHIN)
        assert refused(restarted, doomed, "revoked")
        assert restarted.verify(kept).subject == kept_id


def test_a_deleted_users_tokens_are_refused_and_other_users_pass(
    server: ServerProcess, feed_key: str, verifier: Verifier
) -> None:
    doomed_email, doomed_id, doomed = new_user(server)
    _, kept_id, kept = new_user(server)
    assert verifier.verify(doomed).subject == doomed_id
    server.cli("users", "delete", doomed_email, "--yes")
    assert until(lambda: refused(verifier, doomed, "revoked")), (
        "a deleted user's token still verifies"
    )
    assert verifier.verify(kept).subject == kept_id
    assert doomed_id in snapshot(server, feed_key).get("users", {})
    with Verifier(issuer=server.url, credential=feed_key, feed_wait=WITHIN) as restarted:
        assert restarted.wait_for_feed(WITHIN)
        assert refused(restarted, doomed, "revoked")
        assert restarted.verify(kept).subject == kept_id


def test_a_revoked_client_jwt_is_refused_and_the_clients_other_jwts_pass(
    server: ServerProcess, verifier: Verifier
) -> None:
    client_id, secret, _, (doomed, kept) = new_client(server, tokens=2)
    assert verifier.verify(doomed).client_id == verifier.verify(kept).client_id == client_id
    revoked = httpx.post(  # RFC 7009, by the client the token was issued to
        f"{server.url}/oauth2/revoke", data={"token": doomed}, auth=(client_id, secret), timeout=30
    )
    assert revoked.status_code == 200, revoked.text
    assert until(lambda: refused(verifier, doomed, "token has been revoked")), (
        "a revoked client JWT still verifies"
    )
    assert verifier.verify(kept).client_id == client_id
