"""``WatchwordClient`` / ``AsyncWatchwordClient``: sign in with tokens and keep them fresh.

``WatchwordAuth`` is an ``httpx.Auth`` (httpx's auth-flow pattern): it attaches the access
token, refreshes it ahead of expiry, and on a 401 refreshes once and resends. Refreshes are
single-flight: under many concurrent requests exactly one refresh request goes out (a lock per
side, ``threading.Lock`` for ``httpx.Client``, ``asyncio.Lock`` for ``httpx.AsyncClient``); the
other requests wait for it and reuse its result. Refresh tokens rotate on every refresh, so
sending two refreshes with one refresh token would look like theft to the server.

Example::

    with WatchwordClient("https://auth.example.com") as ww:
        ww.login("alice@example.com", password)
        me = ww.get("/v1/me").json()
        # the same auth on calls to a service that verifies Watchword tokens
        with httpx.Client(base_url="https://notes.example.com", auth=ww.auth) as api:
            api.get("/notes")
        ww.logout()
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self

import httpx

from watchword.sdk._errors import APIError, LoginRejected, SessionEnded

__all__ = ["AsyncWatchwordClient", "TokenSet", "WatchwordAuth", "WatchwordClient"]

logger = logging.getLogger("watchword.sdk")

# A refresh that failed for a passing reason (5xx, 429) is not retried before this many
# seconds while the current access token is still good.
REFRESH_RETRY_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The pair the server answered at login or refresh; secrets are hidden from ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    session_id: str
    expires_at: float
    refresh_at: float
    token_type: str = "Bearer"
    user: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)


class TokenState:
    """The current ``TokenSet`` and the pure decisions about it (no I/O, no locks)."""

    def __init__(
        self, refresh_url: str, *, clock: Callable[[], float], refresh_margin: float
    ) -> None:
        self.refresh_url = refresh_url
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.tokens: TokenSet | None = None
        self.refresh_count = 0
        self._retry_at = 0.0

    @property
    def access_token(self) -> str | None:
        tokens = self.tokens
        return tokens.access_token if tokens is not None else None

    def due(self) -> bool:
        """True when the access token should be refreshed before the next request."""
        tokens = self.tokens
        if tokens is None:
            return False
        now = self.clock()
        if now >= tokens.expires_at:
            return True
        return now >= tokens.refresh_at and now >= self._retry_at

    def authorize(self, request: httpx.Request) -> str | None:
        """Puts the current access token on ``request``; answers the token used."""
        token = self.access_token
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        return token

    def refresh_request(self) -> httpx.Request:
        tokens = self.tokens
        if tokens is None:
            raise SessionEnded(401, "not_authenticated", "Log in before refreshing.")
        return httpx.Request("POST", self.refresh_url, json={"refresh_token": tokens.refresh_token})

    def accept(self, response: httpx.Response, sent_at: float) -> TokenSet:
        """Takes the pair of a 200 login or refresh answer."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise APIError(response.status_code, "bad_response", "The answer is not JSON.")
        access = data.get("access_token")
        refresh = data.get("refresh_token")
        expires_in = data.get("expires_in")
        session_id = data.get("session_id")
        token_type = data.get("token_type", "Bearer")
        user = data.get("user") or {}
        if (
            not isinstance(access, str)
            or not access
            or not isinstance(refresh, str)
            or not refresh
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or expires_in <= 0
            or not isinstance(session_id, str)
            or not isinstance(token_type, str)
            or token_type.lower() != "bearer"
            or not isinstance(user, dict)
        ):
            raise APIError(
                response.status_code, "bad_response", "The answer is not a bearer token pair."
            )
        margin = min(self.refresh_margin, expires_in / 2)
        tokens = TokenSet(
            access_token=access,
            refresh_token=refresh,
            session_id=session_id,
            expires_at=sent_at + expires_in,
            refresh_at=sent_at + expires_in - margin,
            token_type="Bearer",
            user=MappingProxyType(user),
        )
        self.tokens = tokens
        self._retry_at = 0.0
        return tokens

    def apply_refresh(self, response: httpx.Response, sent_at: float) -> None:
        """Takes a refresh answer: the new pair, or the end of the session, or a passing error
        that is tolerated while the current access token is still valid."""
        self.refresh_count += 1
        if response.status_code == 200:
            self.accept(response, sent_at)
            return
        status, code, message = error_of(response)
        if status in (400, 401, 403):
            self.tokens = None
            raise SessionEnded(status, code, message)
        tokens = self.tokens
        if tokens is not None and self.clock() < tokens.expires_at:
            logger.warning("token refresh failed (%s %s); keeping the current token", status, code)
            self._retry_at = self.clock() + REFRESH_RETRY_DELAY
            return
        raise APIError(status, code, message)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """``(status, error, message)`` of a Watchword error answer, tolerant of other bodies."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message = data.get("message")
        return (
            response.status_code,
            data["error"],
            message if isinstance(message, str) else response.reason_phrase,
        )
    return response.status_code, "http_error", response.reason_phrase or "HTTP error"


class WatchwordAuth(httpx.Auth):
    """Bearer auth with refresh ahead of expiry, a single retry on 401, single-flight.

    Use ``WatchwordClient.auth`` / ``AsyncWatchwordClient.auth`` on any httpx client::

        httpx.get("https://notes.example.com/notes", auth=ww.auth)
    """

    def __init__(self, state: TokenState) -> None:
        self.state = state
        self._thread_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow without locks: used as is, it refreshes once per caller. The sync and async
        flows below add the single-flight locks around the same steps."""
        if self.state.due():
            yield from self._refresh_step()
        used = self.state.authorize(request)
        response = yield request
        if response.status_code != 401 or used is None:
            return
        if self.state.access_token == used:
            yield from self._refresh_step()
        if self.state.access_token not in (None, used):
            self.state.authorize(request)
            yield request

    def _refresh_step(self) -> Generator[httpx.Request, httpx.Response, None]:
        sent_at = self.state.clock()
        response = yield self.state.refresh_request()
        response.read()
        self.state.apply_refresh(response, sent_at)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self.state.due():
            with self._thread_lock:
                if self.state.due():  # another thread may have refreshed while we waited
                    yield from self._refresh_step()
        used = self.state.authorize(request)
        response = yield request
        if response.status_code != 401 or used is None:
            return
        with self._thread_lock:
            if self.state.access_token == used:
                yield from self._refresh_step()
        if self.state.access_token not in (None, used):
            self.state.authorize(request)
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        lock = self._lock()
        if self.state.due():
            async with lock:
                if self.state.due():
                    sent_at = self.state.clock()
                    refreshed = yield self.state.refresh_request()
                    await refreshed.aread()
                    self.state.apply_refresh(refreshed, sent_at)
        used = self.state.authorize(request)
        response = yield request
        if response.status_code != 401 or used is None:
            return
        async with lock:
            if self.state.access_token == used:
                sent_at = self.state.clock()
                refreshed = yield self.state.refresh_request()
                await refreshed.aread()
                self.state.apply_refresh(refreshed, sent_at)
        if self.state.access_token not in (None, used):
            self.state.authorize(request)
            yield request

    def _lock(self) -> asyncio.Lock:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock


class _Base:
    def __init__(self, base_url: str, refresh_margin: float, clock: Callable[[], float]) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.state = TokenState(
            f"{self.base_url}/v1/auth/refresh", clock=clock, refresh_margin=refresh_margin
        )
        self.auth = WatchwordAuth(self.state)

    @property
    def tokens(self) -> TokenSet | None:
        """The current pair (None before login and after logout or a refused refresh)."""
        return self.state.tokens

    def _login_body(self, email: str, password: str, device_name: str | None) -> dict[str, str]:
        body = {"email": email, "password": password, "mode": "token"}
        if device_name is not None:
            body["device_name"] = device_name
        return body

    def _login_answer(self, response: httpx.Response, sent_at: float) -> TokenSet:
        if response.status_code != 200:
            raise LoginRejected(*error_of(response))
        return self.state.accept(response, sent_at)

    def _logout_answer(self, response: httpx.Response) -> None:
        if response.is_success or response.status_code == 401:
            self.state.tokens = None
            return
        raise APIError(*error_of(response))


class WatchwordClient(_Base):
    """A synchronous client of the Watchword API holding one token session.

    ``request``/``get``/``post``/... go to the Watchword server with the access token attached
    and kept fresh; ``auth`` does the same for any other ``httpx.Client``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        http_client: httpx.Client | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(base_url, refresh_margin, clock)
        self._owned = http_client is None
        self.http = http_client or httpx.Client(timeout=timeout)

    def login(self, email: str, password: str, *, device_name: str | None = None) -> TokenSet:
        """Signs in (``mode: token``); raises ``LoginRejected`` with the server's reason."""
        sent_at = self.state.clock()
        response = self.http.post(
            f"{self.base_url}/v1/auth/login",
            json=self._login_body(email, password, device_name),
        )
        return self._login_answer(response, sent_at)

    def refresh(self) -> TokenSet:
        """Refreshes now (single-flight with the automatic refreshes)."""
        with self.auth._thread_lock:
            sent_at = self.state.clock()
            response = self.http.send(self.state.refresh_request(), auth=None)
            response.read()
            self.state.apply_refresh(response, sent_at)
        tokens = self.state.tokens
        assert tokens is not None  # apply_refresh raised otherwise
        return tokens

    def logout(self) -> None:
        """Ends the session on the server (its tokens stop working) and forgets the pair."""
        if self.state.tokens is None:
            return
        self._logout_answer(self.request("POST", "/v1/auth/logout"))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request to the Watchword server (``url`` relative to ``base_url``), authorized."""
        return self.http.request(method, self._url(url), auth=self.auth, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def _url(self, url: str) -> str:
        return url if "://" in url else f"{self.base_url}/{url.lstrip('/')}"

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncWatchwordClient(_Base):
    """``WatchwordClient`` for asyncio, on ``httpx.AsyncClient``::

    async with AsyncWatchwordClient("https://auth.example.com") as ww:
        await ww.login("alice@example.com", password)
        me = (await ww.get("/v1/me")).json()
    """

    def __init__(
        self,
        base_url: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(base_url, refresh_margin, clock)
        self._owned = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=timeout)

    async def login(self, email: str, password: str, *, device_name: str | None = None) -> TokenSet:
        sent_at = self.state.clock()
        response = await self.http.post(
            f"{self.base_url}/v1/auth/login",
            json=self._login_body(email, password, device_name),
        )
        return self._login_answer(response, sent_at)

    async def refresh(self) -> TokenSet:
        async with self.auth._lock():
            sent_at = self.state.clock()
            response = await self.http.send(self.state.refresh_request(), auth=None)
            await response.aread()
            self.state.apply_refresh(response, sent_at)
        tokens = self.state.tokens
        assert tokens is not None  # apply_refresh raised otherwise
        return tokens

    async def logout(self) -> None:
        if self.state.tokens is None:
            return
        self._logout_answer(await self.request("POST", "/v1/auth/logout"))

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, self._url(url), auth=self.auth, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    def _url(self, url: str) -> str:
        return url if "://" in url else f"{self.base_url}/{url.lstrip('/')}"

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
