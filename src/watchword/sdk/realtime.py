"""``RealtimeClient``: Watchword's WebSocket gateway from Python, on ``websockets``.

::

    async with RealtimeClient("wss://auth.example.com/v1/realtime", token) as rt:
        await rt.subscribe("news")
        async for event in rt:
            print(event.event, event.data)

``token`` is a callable returning a credential (or an awaitable of one): an access token
(sent as the ``bearer.<token>`` subprotocol, never in the URL) or, with
``credential="ticket"``, a connection ticket (``?ticket=``). It is called for every
connection and every in-socket refresh, so it should return a fresh credential each time the
old one nears expiry. The client answers pings, refreshes over the socket when the server asks,
reconnects with jittered exponential backoff after transient closes, re-subscribes and resumes
from the last event it saw (duplicates are dropped), and stops on terminal closes (a revoked
session: 4003) by raising ``RealtimeClosed`` from the iteration.

The close-code table mirrors the server's (``web/realtime/closecodes.py``; a test keeps them
equal) because the SDK never imports the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

log = logging.getLogger("watchword.sdk.realtime")

PROTOCOL = "watchword.v1"

# code: (name, may reconnect, needs a new credential first)
CLOSE_CODES: dict[int, tuple[str, bool, bool]] = {
    4000: ("bad_message", False, False),
    4001: ("unauthenticated", False, False),
    4002: ("invalid_credential", False, False),
    4003: ("session_revoked", False, False),
    4004: ("origin_not_allowed", False, False),
    4005: ("account_disabled", False, False),
    4006: ("refresh_refused", False, False),
    4007: ("message_too_large", False, False),
    4008: ("connection_limit", False, False),
    4009: ("rate_limited", False, False),
    4010: ("insufficient_scope", False, False),
    4100: ("going_away", True, False),
    4101: ("credential_expired", True, True),
    4102: ("no_pong", True, False),
    4103: ("slow_consumer", True, False),
    4104: ("unavailable", True, False),
}
TRANSIENT_STANDARD = frozenset({1001, 1006, 1011, 1012, 1013, 1014})

Credential = Callable[[], str | Awaitable[str]]


def may_reconnect(code: int | None) -> bool:
    """Whether a close with ``code`` allows reconnecting (``None``: the connection dropped)."""
    if code is None:
        return True
    known = CLOSE_CODES.get(code)
    if known is not None:
        return known[1]
    return 4100 <= code <= 4199 or code in TRANSIENT_STANDARD


class RealtimeError(Exception):
    """Base of the realtime client's errors."""


class RealtimeClosed(RealtimeError):
    """The server closed the connection for good (or the client was closed)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        self.code = code
        self.reason = reason or ""
        name = CLOSE_CODES.get(code, ("",))[0] if code is not None else ""
        super().__init__(f"realtime connection closed: {code} {self.reason or name}".strip())


class SubscriptionRefused(RealtimeError):
    """The server refused a subscribe or unsubscribe (``code``: ``forbidden``...)."""

    def __init__(self, channel: str, code: str, message: str) -> None:
        self.channel = channel
        self.code = code
        super().__init__(f"{channel}: {code}: {message}")


@dataclass(frozen=True, slots=True)
class RealtimeEvent:
    """One event: its id, channel (``user:<id>`` or a name), name, data and publish time."""

    id: str
    channel: str
    event: str
    data: Any
    published_at: str
    replayed: bool = field(default=False, compare=False)


class RealtimeClient:
    """A self-healing connection to the gateway that yields ``RealtimeEvent`` objects."""

    def __init__(
        self,
        url: str,
        token: Credential,
        *,
        credential: Literal["token", "ticket"] = "token",
        channels: tuple[str, ...] = (),
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        max_attempts: int | None = None,
        open_timeout: float = 10.0,
        queue_size: int = 1024,
        max_size: int | None = 4 * 1024 * 1024,
        http_headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError("the realtime URL starts with ws:// or wss://")
        self.url = url
        self._token = token
        self._credential = credential
        self.channels: set[str] = set(channels)
        self._backoff = (backoff_min, backoff_max)
        self._max_attempts = max_attempts
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._headers = http_headers or {}
        self._events: asyncio.Queue[RealtimeEvent | RealtimeClosed] = asyncio.Queue(queue_size)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[str]]] = {}
        self._refs = 0
        self._seen: deque[str] = deque(maxlen=2048)
        self._seen_set: set[str] = set()
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self.welcome: dict[str, Any] | None = None
        self.last_event_id: str | None = None
        self.connections = 0  # how many times it connected (1 + reconnects)

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Open the connection (and keep it open); returns the server's welcome."""
        if self._task is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name="watchword-realtime-client")
        assert self._ready is not None
        return await asyncio.shield(self._ready)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_pending(RealtimeClosed(1000, "client closed"))

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[RealtimeEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RealtimeEvent]:
        while True:
            item = await self._events.get()
            if isinstance(item, RealtimeClosed):
                self._events.put_nowait(item)  # every later iteration ends the same way
                raise item
            yield item

    async def next_event(self, within: float | None = None) -> RealtimeEvent:
        """The next event (raises ``RealtimeClosed`` when the connection ended for good)."""
        item = await asyncio.wait_for(self._events.get(), within)
        if isinstance(item, RealtimeClosed):
            self._events.put_nowait(item)
            raise item
        return item

    # -- requests -------------------------------------------------------------------------

    async def subscribe(self, channel: str, within: float = 10.0) -> None:
        """Subscribe now and after every reconnect; ``SubscriptionRefused`` if not allowed."""
        await self._request({"type": "subscribe", "channel": channel}, channel, within)
        self.channels.add(channel)

    async def unsubscribe(self, channel: str, within: float = 10.0) -> None:
        self.channels.discard(channel)
        await self._request({"type": "unsubscribe", "channel": channel}, channel, within)

    async def _request(self, message: dict[str, Any], channel: str, within: float) -> str:
        ws = self._ws
        if ws is None:
            raise RealtimeError("not connected")
        self._refs += 1
        ref = f"r{self._refs}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (channel, future)
        try:
            await ws.send(json.dumps({**message, "ref": ref}))
            return await asyncio.wait_for(future, within)
        finally:
            self._pending.pop(ref, None)

    # -- the connection loop --------------------------------------------------------------

    async def _credential_value(self) -> str:
        value = self._token()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise RealtimeError("the token provider returned no credential")
        return value

    async def _open(self) -> ClientConnection:
        credential = await self._credential_value()
        subprotocols = [Subprotocol(PROTOCOL)]
        url = self.url
        if self._credential == "ticket":
            url += ("&" if "?" in url else "?") + "ticket=" + quote(credential, safe="")
        else:
            subprotocols.append(Subprotocol("bearer." + credential))
        return await websockets.connect(
            url,
            subprotocols=subprotocols,
            open_timeout=self._open_timeout,
            max_size=self._max_size,
            additional_headers=self._headers,
            ping_interval=None,  # the server's protocol-level pings are answered anyway
        )

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            code: int | None = None
            reason: str | None = None
            try:
                ws = await self._open()
            except websockets.InvalidStatus as exc:
                code, reason = None, f"handshake refused: HTTP {exc.response.status_code}"
                if exc.response.status_code in (401, 403, 404):
                    self._finish(RealtimeClosed(None, reason))
                    return
            except (OSError, TimeoutError, websockets.InvalidHandshake, RealtimeError) as exc:
                code, reason = None, str(exc)
            else:
                self._ws = ws
                try:
                    welcomed = await self._serve(ws)
                finally:
                    self._ws = None
                code, reason = ws.close_code, ws.close_reason
                if welcomed:
                    attempt = 0
            if self._closed:
                return
            if not may_reconnect(code):
                self._finish(RealtimeClosed(code, reason))
                return
            attempt += 1
            if self._max_attempts is not None and attempt > self._max_attempts:
                self._finish(RealtimeClosed(code, reason or "gave up reconnecting"))
                return
            low, high = self._backoff
            delay = random.uniform(0, min(high, low * 2 ** (attempt - 1)))  # full jitter
            log.info("realtime: closed (%s %s); reconnecting in %.2fs", code, reason, delay)
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> bool:
        """Read one connection until it closes; ``True`` if the server welcomed it."""
        welcomed = False
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "welcome":
                    welcomed = True
                    await self._welcomed(ws, message)
                elif kind == "event":
                    await self._event(message)
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "refresh_required":
                    task = asyncio.create_task(self._refresh(ws))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                elif kind in ("subscribed", "unsubscribed", "error"):
                    self._answer(message)
        except websockets.ConnectionClosed:
            pass
        except (ValueError, AttributeError):
            log.warning("realtime: unreadable message from the server; reconnecting")
            await ws.close(1002, "bad message from server")
        return welcomed

    async def _welcomed(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        self.welcome = message
        self.connections += 1
        for channel in sorted(self.channels):
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        if self.last_event_id is not None:
            await ws.send(json.dumps({"type": "resume", "since": self.last_event_id}))
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(message)

    async def _event(self, message: dict[str, Any]) -> None:
        event_id = str(message.get("id"))
        if event_id in self._seen_set:
            return  # a replay of something already delivered
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)
        self.last_event_id = event_id
        # A full queue blocks reading: the server then sees a slow consumer, cuts this
        # connection, and the reconnect resumes from the last event taken.
        await self._events.put(
            RealtimeEvent(
                id=event_id,
                channel=str(message.get("channel")),
                event=str(message.get("event")),
                data=message.get("data"),
                published_at=str(message.get("published_at")),
            )
        )

    async def _refresh(self, ws: ClientConnection) -> None:
        try:
            credential = await self._credential_value()
            key = "ticket" if self._credential == "ticket" else "token"
            await ws.send(json.dumps({"type": "refresh", key: credential}))
        except websockets.ConnectionClosed:
            return
        except (RealtimeError, httpx.HTTPError, OSError) as exc:
            log.warning("realtime: could not get a fresh credential: %s", exc)

    def _answer(self, message: dict[str, Any]) -> None:
        ref = message.get("ref")
        pending = self._pending.get(ref) if isinstance(ref, str) else None
        if pending is None:
            if message.get("type") == "error":
                log.warning(
                    "realtime: server error %s: %s", message.get("code"), message.get("message")
                )
            return
        channel, future = pending
        if future.done():
            return
        if message.get("type") == "error":
            future.set_exception(
                SubscriptionRefused(channel, str(message.get("code")), str(message.get("message")))
            )
        else:
            future.set_result(str(message.get("type")))

    def _finish(self, closed: RealtimeClosed) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(closed)
        self._fail_pending(closed)
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(closed)
        if self._events.full():
            # The consumer is behind: make room so it learns of the end after what it has.
            with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
                self._events.get_nowait()
                self._events.put_nowait(closed)

    def _fail_pending(self, error: RealtimeError) -> None:
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)


class _Poster(Protocol):
    async def post(self, url: str, **kwargs: Any) -> httpx.Response: ...


class PublishRefused(RealtimeError):
    """``POST /v1/realtime/publish`` answered an error (``status``, ``code``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"publish refused: {status} {code}: {message}")


async def publish_event(
    client: _Poster,
    event: str,
    data: Any = None,
    *,
    user_id: str | None = None,
    channel: str | None = None,
    url: str = "/v1/realtime/publish",
) -> str:
    """Publish ``event`` to every connection of ``user_id`` or to ``channel``; returns its id.

    ``client`` is anything with an async ``post`` that authenticates: an
    ``AsyncWatchwordClient`` signed in as a user with ``realtime:publish``, or an
    ``httpx.AsyncClient(base_url=..., headers=...)`` carrying an API key or client token::

        event_id = await publish_event(ww, "order.shipped", {"order": 42}, user_id=user_id)
    """
    if (user_id is None) == (channel is None):
        raise ValueError("give exactly one of user_id and channel")
    body: dict[str, Any] = {"event": event, "data": data}
    body["user_id" if user_id is not None else "channel"] = user_id or channel
    response = await client.post(url, json=body)
    if response.status_code != 202:
        try:
            error = response.json()
            code, message = str(error.get("error")), str(error.get("message"))
        except ValueError:
            code, message = "error", response.text[:200]
        raise PublishRefused(response.status_code, code, message)
    return str(response.json()["id"])


__all__ = [
    "CLOSE_CODES",
    "PublishRefused",
    "RealtimeClient",
    "RealtimeClosed",
    "RealtimeError",
    "RealtimeEvent",
    "SubscriptionRefused",
    "may_reconnect",
    "publish_event",
]
