"""WatchwordAuth's flow by hand (next/send), then the clients on MockTransport: login, refresh
ahead of expiry, retry on 401, single-flight under concurrency, logout and the failure paths."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.sdk.issuer import Clock
from watchword.sdk import (
    APIError,
    AsyncWatchwordClient,
    LoginRejected,
    SessionEnded,
    TokenSet,
    WatchwordAuth,
    WatchwordClient,
)
from watchword.sdk._client import TokenState

BASE = "https://auth.test"


def pair(n: int, expires_in: int = 600) -> dict[str, Any]:
    return {
        "access_token": f"access-{n}",
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": f"refresh-{n}",
        "session_id": "sess-1",
        "user": {"id": "user-1", "email": "alice@example.com"},
    }


def state_with(clock: Clock, n: int = 1, expires_in: int = 600) -> TokenState:
    state = TokenState(f"{BASE}/v1/auth/refresh", clock=clock, refresh_margin=60)
    state.accept(httpx.Response(200, json=pair(n, expires_in)), clock())
    return state


# -- the flow generator, driven by hand -------------------------------------------------------


def test_the_flow_attaches_the_token(sdk_clock: Clock) -> None:
    flow = WatchwordAuth(state_with(sdk_clock)).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    request = next(flow)
    assert request.headers["Authorization"] == "Bearer access-1"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))


def test_the_flow_refreshes_ahead_of_expiry(sdk_clock: Clock) -> None:
    state = state_with(sdk_clock)
    sdk_clock.advance(541)  # inside the 60 s margin
    flow = WatchwordAuth(state).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    refresh = next(flow)
    assert refresh.method == "POST"
    assert str(refresh.url) == f"{BASE}/v1/auth/refresh"
    assert json.loads(refresh.content) == {"refresh_token": "refresh-1"}
    assert "Authorization" not in refresh.headers
    request = flow.send(httpx.Response(200, json=pair(2)))
    assert request.headers["Authorization"] == "Bearer access-2"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    assert state.tokens is not None and state.tokens.refresh_token == "refresh-2"
    assert state.tokens.expires_at == sdk_clock() + 600


def test_the_flow_refreshes_once_on_a_401_and_resends(sdk_clock: Clock) -> None:
    state = state_with(sdk_clock)
    flow = WatchwordAuth(state).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    next(flow)
    refresh = flow.send(httpx.Response(401))
    assert str(refresh.url).endswith("/v1/auth/refresh")
    again = flow.send(httpx.Response(200, json=pair(2)))
    assert again.headers["Authorization"] == "Bearer access-2"
    # A second 401 is the answer: no loop of refreshes.
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(401))
    assert state.refresh_count == 1


def test_a_refused_refresh_ends_the_session(sdk_clock: Clock) -> None:
    state = state_with(sdk_clock)
    flow = WatchwordAuth(state).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    next(flow)
    flow.send(httpx.Response(401))
    refused = httpx.Response(401, json={"error": "invalid_grant", "message": "reused"})
    with pytest.raises(SessionEnded, match="invalid_grant") as caught:
        flow.send(refused)
    assert caught.value.status_code == 401
    assert state.tokens is None


def test_without_tokens_the_request_goes_out_bare(sdk_clock: Clock) -> None:
    state = TokenState(f"{BASE}/v1/auth/refresh", clock=sdk_clock, refresh_margin=60)
    flow = WatchwordAuth(state).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    assert "Authorization" not in next(flow).headers
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(401))


def test_a_passing_refresh_failure_keeps_a_still_valid_token(sdk_clock: Clock) -> None:
    state = state_with(sdk_clock)
    sdk_clock.advance(550)
    auth = WatchwordAuth(state)
    flow = auth.auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    next(flow)
    request = flow.send(httpx.Response(503, json={"error": "unavailable", "message": "db"}))
    assert request.headers["Authorization"] == "Bearer access-1"
    assert not state.due()  # no new attempt for a few seconds
    sdk_clock.advance(6)
    assert state.due()


def test_a_passing_refresh_failure_with_an_expired_token_raises(sdk_clock: Clock) -> None:
    state = state_with(sdk_clock)
    sdk_clock.advance(601)
    flow = WatchwordAuth(state).auth_flow(httpx.Request("GET", f"{BASE}/v1/me"))
    next(flow)
    with pytest.raises(APIError, match="503 unavailable"):
        flow.send(httpx.Response(503, json={"error": "unavailable", "message": "db"}))


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "a"},
        {**pair(2), "expires_in": "600"},
        {**pair(2), "expires_in": 0},
        {**pair(2), "token_type": "mac"},
        {**pair(2), "refresh_token": ""},
        ["not", "an", "object"],
    ],
)
def test_a_malformed_token_answer_is_an_error(sdk_clock: Clock, body: Any) -> None:
    state = state_with(sdk_clock)
    with pytest.raises(APIError, match="bad_response"):
        state.accept(httpx.Response(200, json=body), sdk_clock())
    assert state.tokens is not None and state.tokens.access_token == "access-1"


def test_token_sets_hide_their_secrets(sdk_clock: Clock) -> None:
    tokens = state_with(sdk_clock).tokens
    assert isinstance(tokens, TokenSet)
    assert "access-1" not in repr(tokens) and "refresh-1" not in repr(tokens)


# -- a fake server --------------------------------------------------------------------------


class FakeServer:
    """Login, refresh (rotating, one pair per refresh token) and a protected /v1/me."""

    def __init__(self, expires_in: int = 600) -> None:
        self.expires_in = expires_in
        self.issued = 0
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.refreshes = 0
        self.logins: list[Any] = []
        self.logouts = 0
        self.lock = threading.Lock()
        self.transport = httpx.MockTransport(self.handle)

    def _issue(self) -> httpx.Response:
        self.issued += 1
        body = pair(self.issued, self.expires_in)
        self.valid_access.add(body["access_token"])
        self.valid_refresh.add(body["refresh_token"])
        return httpx.Response(200, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/auth/login":
            body = json.loads(request.content)
            self.logins.append(body)
            if body.get("password") != "right":
                return httpx.Response(
                    401,
                    json={"error": "invalid_credentials", "message": "Wrong email or password."},
                )
            return self._issue()
        if path == "/v1/auth/refresh":
            self.refreshes += 1
            token = json.loads(request.content).get("refresh_token")
            if token not in self.valid_refresh:
                return httpx.Response(
                    401, json={"error": "invalid_grant", "message": "Refresh token reused."}
                )
            self.valid_refresh.discard(token)
            return self._issue()
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_access:
            return httpx.Response(401, json={"error": "not_authenticated", "message": "no"})
        if path == "/v1/auth/logout":
            self.logouts += 1
            self.valid_access.clear()
            self.valid_refresh.clear()
            return httpx.Response(204)
        return httpx.Response(200, json={"token": auth.removeprefix("Bearer ")})

    def revoke_access_tokens(self) -> None:
        self.valid_access.clear()


def test_login_then_calls_then_logout(sdk_clock: Clock) -> None:
    server = FakeServer()
    with WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    ) as ww:
        tokens = ww.login("alice@example.com", "right", device_name="laptop")
        assert tokens.session_id == "sess-1"
        assert tokens.user["email"] == "alice@example.com"
        assert server.logins == [
            {
                "email": "alice@example.com",
                "password": "right",
                "mode": "token",
                "device_name": "laptop",
            }
        ]
        assert ww.get("/v1/me").json() == {"token": "access-1"}
        ww.logout()
        assert ww.tokens is None
        assert server.logouts == 1
        assert ww.get("/v1/me").status_code == 401


def test_a_wrong_password_is_a_login_rejected(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(BASE, http_client=httpx.Client(transport=server.transport))
    with pytest.raises(LoginRejected, match="invalid_credentials") as caught:
        ww.login("alice@example.com", "wrong")
    assert caught.value.status_code == 401
    assert caught.value.description == "Wrong email or password."
    assert ww.tokens is None


def test_a_non_json_error_is_still_reported(sdk_clock: Clock) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad</html>"))
    ww = WatchwordClient(BASE, http_client=httpx.Client(transport=transport))
    with pytest.raises(LoginRejected, match="502 http_error"):
        ww.login("alice@example.com", "right")


def test_the_sync_client_refreshes_ahead_of_expiry(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    sdk_clock.advance(545)
    assert ww.get("/v1/me").json() == {"token": "access-2"}
    assert server.refreshes == 1
    assert ww.get("/v1/me").json() == {"token": "access-2"}
    assert server.refreshes == 1


def test_a_401_refreshes_once_and_resends(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    server.revoke_access_tokens()
    response = ww.get("/v1/me")
    assert response.status_code == 200
    assert response.json() == {"token": "access-2"}
    assert server.refreshes == 1


def test_a_reused_refresh_token_ends_the_session(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    server.valid_refresh.clear()  # say another device used it
    sdk_clock.advance(601)
    with pytest.raises(SessionEnded, match="invalid_grant"):
        ww.get("/v1/me")
    assert ww.tokens is None
    with pytest.raises(SessionEnded):
        ww.refresh()


def test_explicit_refresh_rotates_the_pair(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    assert ww.refresh().refresh_token == "refresh-2"
    assert "refresh-1" not in server.valid_refresh


def test_the_auth_works_on_another_client(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    sdk_clock.advance(590)
    with httpx.Client(
        transport=server.transport, base_url="https://notes.test", auth=ww.auth
    ) as api:
        assert api.get("/notes").json() == {"token": "access-2"}


def test_fifty_threads_share_one_refresh(sdk_clock: Clock) -> None:
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    sdk_clock.advance(590)
    start = threading.Barrier(50)

    def call(_: int) -> Any:
        start.wait()
        return ww.get("/v1/me").json()

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(call, range(50)))
    assert server.refreshes == 1
    assert answers == [{"token": "access-2"}] * 50


async def test_fifty_tasks_share_one_refresh_ahead_of_expiry(sdk_clock: Clock) -> None:
    server = FakeServer()
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/refresh":
            await gate.wait()  # every task is in flight before the refresh answers
        return server.handle(request)

    async with AsyncWatchwordClient(
        BASE,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        clock=sdk_clock,
    ) as ww:
        await ww.login("alice@example.com", "right")
        sdk_clock.advance(590)
        tasks = [asyncio.create_task(ww.get("/v1/me")) for _ in range(50)]
        for _ in range(20):
            await asyncio.sleep(0)
        gate.set()
        answers = [r.json() for r in await asyncio.gather(*tasks)]
    assert server.refreshes == 1
    assert answers == [{"token": "access-2"}] * 50


async def test_fifty_tasks_hit_by_a_401_share_one_refresh(sdk_clock: Clock) -> None:
    server = FakeServer()
    async with AsyncWatchwordClient(
        BASE, http_client=httpx.AsyncClient(transport=server.transport), clock=sdk_clock
    ) as ww:
        await ww.login("alice@example.com", "right")
        server.revoke_access_tokens()
        responses = await asyncio.gather(*(ww.get("/v1/me") for _ in range(50)))
    assert server.refreshes == 1
    assert [r.json() for r in responses] == [{"token": "access-2"}] * 50


async def test_the_async_client_logs_in_refreshes_and_logs_out(sdk_clock: Clock) -> None:
    server = FakeServer()
    async with AsyncWatchwordClient(
        BASE, http_client=httpx.AsyncClient(transport=server.transport), clock=sdk_clock
    ) as ww:
        with pytest.raises(LoginRejected):
            await ww.login("alice@example.com", "wrong")
        await ww.login("alice@example.com", "right")
        assert (await ww.refresh()).access_token == "access-2"
        assert (await ww.get("/v1/me")).json() == {"token": "access-2"}
        await ww.logout()
        assert ww.tokens is None
        await ww.logout()  # nothing to do
    assert server.logouts == 1


async def test_an_async_refused_refresh_raises_session_ended(sdk_clock: Clock) -> None:
    server = FakeServer()
    async with AsyncWatchwordClient(
        BASE, http_client=httpx.AsyncClient(transport=server.transport), clock=sdk_clock
    ) as ww:
        await ww.login("alice@example.com", "right")
        server.revoke_access_tokens()
        server.valid_refresh.clear()
        with pytest.raises(SessionEnded):
            await ww.get("/v1/me")
        assert ww.tokens is None


def test_a_logout_refused_by_the_server_is_an_error(sdk_clock: Clock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/login":
            return httpx.Response(200, json=pair(1))
        return httpx.Response(500, json={"error": "internal", "message": "boom"})

    ww = WatchwordClient(BASE, http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    ww.login("alice@example.com", "right")
    with pytest.raises(APIError, match="500 internal"):
        ww.logout()
    assert ww.tokens is not None


def test_no_token_or_password_reaches_the_logs(
    sdk_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server = FakeServer()
    ww = WatchwordClient(
        BASE, http_client=httpx.Client(transport=server.transport), clock=sdk_clock
    )
    ww.login("alice@example.com", "right")
    sdk_clock.advance(590)
    ww.get("/v1/me")
    server.revoke_access_tokens()
    ww.get("/v1/me")
    server.valid_refresh.clear()
    server.revoke_access_tokens()
    with pytest.raises(SessionEnded):
        ww.get("/v1/me")
    assert caplog.records  # httpx and the SDK did log
    for secret in ("access-1", "access-2", "refresh-1", "refresh-2", "right"):
        assert secret not in caplog.text
