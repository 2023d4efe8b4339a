"""Token routes: refresh-token rotation and the revocation stream (server-sent events).

``GET /v1/revocations/stream`` (scope ``revocations:read``) sends first an ``event: snapshot``
with the revoked session ids and token ids still worth refusing, each with the epoch second
until which it matters, and the feed ``cursor``; then one ``event: revoked`` per revocation
with ``id:`` its control-feed id; a ``: ping`` comment keeps idle connections open. A client
that reconnects with ``Last-Event-ID`` gets the events it missed, or a fresh snapshot when the
feed no longer holds them. The stream ends when the server shuts down, when the credential
that opened it expires, or when that credential is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from watchword.domain.errors import StoreUnavailable
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.services.accounts import SignIn
from watchword.services.context import RequestContext
from watchword.services.revocations import Revocation, RevocationFeed, sse_frame
from watchword.web.deps import container_of, context, require
from watchword.web.routes.schemas import Body

router = APIRouter(tags=["tokens"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_LAST_EVENT_ID = 20


class RefreshRequest(Body):
    refresh_token: str = Field(max_length=256)


async def token_login(signin: SignIn, request: Request, ctx: RequestContext) -> JSONResponse:
    """A completed sign-in with ``"mode": "token"``: the same session row as a cookie
    sign-in (listed, limited and revoked the same way), answered with a token pair."""
    container = container_of(request)
    try:
        pair = await container.tokens.start_session(signin.session, signin.user)
    except BaseException:
        # No half sign-in: a session nobody holds a token for is revoked at once.
        with contextlib.suppress(Exception):
            await container.sessions.revoke(signin.session.id, RevokeReason.REVOKED, ctx)
        raise
    return JSONResponse(pair.body(signin.user), headers=NO_STORE)


@router.post("/v1/auth/refresh", summary="Rotate a refresh token: a new access and refresh pair")
async def refresh(
    body: RefreshRequest, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    pair, user = await container_of(request).tokens.refresh(body.refresh_token, ctx)
    return JSONResponse(pair.body(user), headers=NO_STORE)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_LAST_EVENT_ID or not value.isdigit():
        return None
    return int(value)


@router.get(
    "/v1/revocations/stream",
    summary="Revoked sessions and access tokens, as server-sent events",
    response_class=StreamingResponse,
)
async def revocation_stream(
    request: Request, principal: Principal = Depends(require("revocations:read"))
) -> StreamingResponse:
    container = container_of(request)
    tokens = container.tokens
    if not tokens.ready:
        raise StoreUnavailable("The revocation list is not loaded yet.")
    feed = tokens.revocations
    subscriber = feed.subscribe()
    try:
        await feed.catch_up()
        upto = feed.cursor
        last_id = _parse_last_event_id(request.headers.get("last-event-id"))
        replay = None if last_id is None else await feed.replay_after(last_id, upto)
        first: list[bytes] = (
            [sse_frame("snapshot", feed.snapshot(), event_id=upto, dumps=_dumps)]
            if replay is None
            else [_revoked_frame(r) for r in replay]
        )
    except BaseException:
        feed.unsubscribe(subscriber)
        raise
    ping = container.settings.revocation_stream_ping
    clock = container.clock

    def still_valid() -> bool:
        if tokens.is_revoked(principal.session_id, principal.credential_id):
            return False
        return principal.expires_at is None or clock.now() < principal.expires_at

    async def events() -> AsyncIterator[bytes]:
        seen = upto
        try:
            for frame in first:
                yield frame
            while not feed.closed and still_valid():
                if subscriber.lagged:
                    subscriber.lagged = False
                    _drain(subscriber.queue)
                    seen = feed.cursor
                    yield sse_frame("snapshot", feed.snapshot(), event_id=seen, dumps=_dumps)
                    continue
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), ping)
                except TimeoutError:
                    yield sse_frame(comment="ping", dumps=_dumps)
                    continue
                if item is None:
                    break
                if item.cursor > seen:
                    yield _revoked_frame(item)
        finally:
            feed.unsubscribe(subscriber)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
    )


def _revoked_frame(revocation: Revocation) -> bytes:
    return sse_frame(revocation.event, revocation.data(), event_id=revocation.cursor, dumps=_dumps)


def _drain(queue: asyncio.Queue[Revocation | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


def end_streams_on_exit_signal(feed: RevocationFeed) -> Callable[[], None]:
    """Close the revocation streams as soon as the server is told to stop.

    Uvicorn waits for open responses before it runs the lifespan shutdown, so a stream that
    only ended there would hold the shutdown until the graceful timeout and then be cut. This
    chains a handler in front of the server's SIGINT/SIGTERM handlers that ends the streams
    cleanly first. Returns a function that restores the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def make(sig: int) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(feed.close)
            previous[sig](signum, frame)

        return handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if not callable(current):
            continue  # no server handler to chain to (SIG_DFL, SIG_IGN)
        previous[sig] = current
        signal.signal(sig, make(sig))

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
