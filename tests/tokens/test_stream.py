"""GET /v1/revocations/stream over a real HTTP server: snapshot, live events, resume, pings,
access rules, and a clean end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.helpers import PASSWORD, TEST_SECRET_KEY, free_port, wait_until_serving
from tests.tokens.helpers import bearer, token_login
from tests.tokens.sse import Event, Served, events, next_event
from watchword.domain.errors import StoreUnavailable
from watchword.domain.events import session_revoked
from watchword.services.context import CLI


async def service_token(http: httpx.AsyncClient, container: Any) -> str:
    """A user with the "service" role, signed in for tokens."""
    response = await http.post("/v1/users", json={"email": "svc@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    user_id = response.json()["user"]["id"]
    await container.accounts.set_roles(user_id, ["service"], CLI, actor_id="test")
    return str((await token_login(http, "svc@example.com"))["access_token"])


@pytest.fixture
async def served(app_factory: Any) -> AsyncIterator[tuple[Served, Any, httpx.AsyncClient]]:
    app, container = await app_factory(revocation_stream_ping=0.3)
    async with Served(app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield server, container, http
            container.tokens.revocations.close()


async def open_stream(
    http: httpx.AsyncClient, token: str, last_event_id: str | None = None
) -> tuple[httpx.Response, AsyncIterator[Event]]:
    headers = bearer(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    request = http.build_request("GET", "/v1/revocations/stream", headers=headers)
    response = await http.send(request, stream=True)
    return response, events(response)


async def test_snapshot_live_events_pings_and_resume(
    served: tuple[Served, Any, httpx.AsyncClient],
) -> None:
    _, container, http = served
    token = await service_token(http, container)
    response = await http.post(
        "/v1/users", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    early = await token_login(http)
    await http.post("/v1/auth/logout", headers=bearer(early["access_token"]))

    response, stream = await open_stream(http, token)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    snapshot = await next_event(stream)
    assert snapshot.event == "snapshot"
    data = snapshot.json()
    assert set(data) == {"sessions", "jtis", "clients", "users", "cursor"}
    assert early["session_id"] in data["sessions"]
    assert data["sessions"][early["session_id"]] > container.clock.now().timestamp()
    assert data["jtis"] == {}
    cursor = data["cursor"]
    assert snapshot.id == str(cursor)

    # A ping keeps the idle connection alive.
    ping = await next_event(stream, skip_pings=False)
    assert ping.comments == ["ping"] and ping.event is None

    # A live session revocation.
    victim = await token_login(http)
    await http.post("/v1/auth/logout", headers=bearer(victim["access_token"]))
    revoked = await next_event(stream)
    assert revoked.event == "revoked"
    assert revoked.json()["kind"] == "session" and revoked.json()["id"] == victim["session_id"]
    assert int(revoked.id or 0) > cursor
    until = revoked.json()["until"]
    now = container.clock.now().timestamp()
    assert now < until <= now + 610 + 1

    # A live token revocation.
    other = await token_login(http)
    principal = await container.tokens.authenticate_bearer(other["access_token"])
    await container.tokens.revoke_jti(principal.credential_id, principal.expires_at)
    jti_event = await next_event(stream)
    assert jti_event.json() == {
        "kind": "jti",
        "id": principal.credential_id,
        "until": principal.expires_at.timestamp(),
    }
    last_id = jti_event.id
    await response.aclose()

    # Missed while away: replayed after Last-Event-ID, with no snapshot.
    missed = await token_login(http)
    await http.post("/v1/auth/logout", headers=bearer(missed["access_token"]))
    await container.tokens.revocations.read_once()
    response, stream = await open_stream(http, token, last_event_id=last_id)
    replayed = await next_event(stream)
    assert replayed.event == "revoked"
    assert replayed.json()["id"] == missed["session_id"]
    await response.aclose()

    # Resuming from the latest id: nothing to replay, then live events.
    response, stream = await open_stream(http, token, last_event_id=replayed.id)
    late = await token_login(http)
    await http.post("/v1/auth/logout", headers=bearer(late["access_token"]))
    event = await next_event(stream)
    assert event.event == "revoked" and event.json()["id"] == late["session_id"]
    await response.aclose()


async def test_resume_from_a_pruned_or_bogus_id_gets_a_snapshot(
    served: tuple[Served, Any, httpx.AsyncClient],
) -> None:
    _, container, http = served
    token = await service_token(http, container)
    response = await http.post(
        "/v1/users", json={"email": "alice@example.com", "password": PASSWORD}
    )
    for _ in range(2):
        pair = await token_login(http)
        await http.post("/v1/auth/logout", headers=bearer(pair["access_token"]))
    await container.tokens.revocations.read_once()
    # The feed keeps a day; drop everything older than now.
    await container.db.control.clear_older_than(container.clock.now() + timedelta(seconds=1))
    for last_id in ("1", "999999", "not-a-number", ""):
        response, stream = await open_stream(http, token, last_event_id=last_id)
        first = await next_event(stream)
        assert first.event == "snapshot", last_id
        assert pair["session_id"] in first.json()["sessions"]
        await response.aclose()


async def test_a_new_stream_starts_from_the_end_of_the_feed(app_factory: Any) -> None:
    """With no stream open the feed is read only by its slow poll; a stream that opens reads
    the feed first, so another node's revocation of a moment ago is in its snapshot."""
    app, container = await app_factory(revocation_stream_ping=0.3, control_poll_interval=3600)
    async with Served(app) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        token = await service_token(http, container)
        expires = container.clock.now().timestamp() + 600
        (last,) = await container.db.control.append(
            [session_revoked("elsewhere-session", "elsewhere-user", "logout", expires)],
            container.clock.now(),
            origin="another-node",
        )
        response, stream = await open_stream(http, token)
        snapshot = await next_event(stream)
        assert snapshot.event == "snapshot"
        assert snapshot.json()["cursor"] == last
        assert "elsewhere-session" in snapshot.json()["sessions"]
        await response.aclose()
        container.tokens.revocations.close()


async def test_a_stream_opened_while_the_feed_is_unreadable_starts_from_its_cursor(
    served: tuple[Served, Any, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up is best effort: with the control feed down a new stream still opens, from
    the cursor the node has (its in-memory sets are current), as it did before catching up."""
    _, container, http = served
    token = await service_token(http, container)
    feed = container.tokens.revocations
    cursor = feed.cursor

    async def unavailable(after_id: int, **_: Any) -> list[Any]:
        raise StoreUnavailable()

    monkeypatch.setattr(container.db.control, "read_after", unavailable)
    response, stream = await open_stream(http, token)
    assert response.status_code == 200
    snapshot = await next_event(stream)
    assert snapshot.event == "snapshot" and snapshot.json()["cursor"] == cursor
    assert feed.cursor == cursor
    await response.aclose()


async def test_stream_access_rules(served: tuple[Served, Any, httpx.AsyncClient]) -> None:
    _, _container, http = served
    response = await http.get("/v1/revocations/stream")
    assert response.status_code == 401
    await http.post("/v1/users", json={"email": "alice@example.com", "password": PASSWORD})
    pair = await token_login(http)
    response = await http.get("/v1/revocations/stream", headers=bearer(pair["access_token"]))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert "revocations:read" in response.headers["www-authenticate"]


async def test_the_stream_ends_when_its_own_credential_is_revoked(
    served: tuple[Served, Any, httpx.AsyncClient],
) -> None:
    _, container, http = served
    token = await service_token(http, container)
    response, stream = await open_stream(http, token)
    assert (await next_event(stream)).event == "snapshot"
    await http.post("/v1/auth/logout", headers=bearer(token))
    received = [event async for event in stream]  # ends, cleanly
    assert all(e.event in (None, "revoked") for e in received)
    await response.aclose()


async def test_shutdown_ends_open_streams(app_factory: Any) -> None:
    app, container = await app_factory(revocation_stream_ping=0.3)
    async with Served(app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            token = await service_token(http, container)
            response, stream = await open_stream(http, token)
            assert (await next_event(stream)).event == "snapshot"
            container.tokens.revocations.close()  # what the stop signal does first
            rest = [event async for event in stream]
            assert all(e.event is None for e in rest)
            await response.aclose()


@pytest.mark.e2e
def test_sigterm_ends_streams_of_a_real_server_cleanly(tmp_path: Any) -> None:
    """`watchword serve` in a process: a `watchword keys rotate` run beside it reaches it,
    and SIGTERM ends an open stream with a clean end of the chunked body (not a cut
    connection)."""
    import time

    env = {
        **os.environ,
        "WATCHWORD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/ww.db",
        "WATCHWORD_SECRET_KEY": TEST_SECRET_KEY,
        "WATCHWORD_SECRET_KEY_FILE": str(tmp_path / "secret"),
        "WATCHWORD_ARGON2_MEMORY_KIB": "19456",
    }
    port = free_port()
    cli = [sys.executable, "-m", "watchword.cli"]
    for args, stdin in (
        (["db", "upgrade"], ""),
        (
            [
                "users",
                "create",
                "--email",
                "svc@example.com",
                "--password-stdin",
                "--role",
                "service",
            ],
            PASSWORD + "\n",
        ),
    ):
        done = subprocess.run([*cli, *args], input=stdin, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(server, base)
        # A rotation from the command line reaches the running server (control feed).
        before = httpx.get(f"{base}/.well-known/jwks.json", timeout=10).json()["keys"]
        done = subprocess.run(
            [*cli, "keys", "rotate", "--json"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        rotated = json.loads(done.stdout)["kid"]
        deadline = time.monotonic() + 30  # a bound on waiting, never a result
        while rotated not in [
            k["kid"] for k in httpx.get(f"{base}/.well-known/jwks.json").json()["keys"]
        ]:
            assert time.monotonic() < deadline, "rotation never reached the server"
            time.sleep(0.1)
        assert [k["kty"] for k in before] == ["OKP", "RSA"]  # access and ID-token keys
        login = httpx.post(
            f"{base}/v1/auth/login",
            json={"email": "svc@example.com", "password": PASSWORD, "mode": "token"},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert jwt.get_unverified_header(token)["kid"] == rotated
        with httpx.stream(
            "GET", f"{base}/v1/revocations/stream", headers=bearer(token), timeout=30
        ) as response:
            lines = response.iter_lines()
            first = []
            for line in lines:
                if not line:
                    break
                first.append(line)
            assert "event: snapshot" in first
            server.send_signal(signal.SIGTERM)
            rest = list(lines)  # raises RemoteProtocolError if the body is cut
            assert all(not line.startswith("event: revoked") for line in rest)
        # uvicorn re-raises the signal it handled once it has shut down gracefully.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
