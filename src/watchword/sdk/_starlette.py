"""``BearerAuthMiddleware``: Watchword bearer tokens for any Starlette (or FastAPI) app.

Pure ASGI, so it adds no per-request task or body buffering. Each HTTP or WebSocket request with
``Authorization: Bearer`` is verified once; the result is kept on the ASGI scope, where
``token_of(request)`` and the FastAPI ``require`` dependency read it. With ``required=True`` (or
``scopes``) the middleware itself refuses requests that do not qualify, except under
``exclude`` path prefixes::

    app = Starlette(routes=...)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, scopes=["notes:read"])

    async def notes(request):
        token = token_of(request)
        return JSONResponse({"user": token.subject if token else None})
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from watchword.sdk._bearer import bearer_token, refusal
from watchword.sdk._errors import InsufficientScope, WatchwordSDKError
from watchword.sdk._verifier import VerifiedToken, Verifier

__all__ = ["SCOPE_ERROR", "SCOPE_TOKEN", "BearerAuthMiddleware", "auth_error_of", "token_of"]

SCOPE_TOKEN = "watchword.sdk.token"
SCOPE_ERROR = "watchword.sdk.error"
# RFC 6455 section 7.4.1: 1008, policy violation (the handshake is refused before accept).
WS_POLICY_VIOLATION = 1008


class BearerAuthMiddleware:
    """Verifies the bearer token of each request; refuses when ``required`` or ``scopes``."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        required: bool = False,
        scopes: Iterable[str] = (),
        exclude: Iterable[str] = (),
        realm: str = "watchword",
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.scopes = frozenset(scopes)
        self.required = required or bool(self.scopes)
        self.exclude = tuple(exclude)
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token: VerifiedToken | None = None
        error: WatchwordSDKError | None = None
        try:
            raw = bearer_token(HTTPConnection(scope).headers.get("authorization"))
            if raw is not None:
                token = await self.verifier.averify(raw)
        except WatchwordSDKError as exc:
            error = exc
        scope[SCOPE_TOKEN] = token
        scope[SCOPE_ERROR] = error
        if self.required and not scope["path"].startswith(self.exclude or ("\0",)):
            if error is None and token is not None:
                missing = token.missing_scopes(self.scopes)
                if missing:
                    error = InsufficientScope(missing)
            if error is not None or token is None:
                await self._refuse(scope, receive, send, error)
                return
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: WatchwordSDKError | None
    ) -> None:
        if scope["type"] == "websocket":
            reason = error.description if error is not None else "A bearer token is required."
            await send(
                {"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": reason[:120]}
            )
            return
        answer = refusal(error, self.realm)
        response = JSONResponse(answer.body, answer.status_code, headers=answer.headers)
        await response(scope, receive, send)


def token_of(conn: HTTPConnection) -> VerifiedToken | None:
    """The token ``BearerAuthMiddleware`` verified for this request, if any."""
    token: VerifiedToken | None = conn.scope.get(SCOPE_TOKEN)
    return token


def auth_error_of(conn: HTTPConnection) -> WatchwordSDKError | None:
    """Why the request's bearer token was refused, if it was."""
    error: WatchwordSDKError | None = conn.scope.get(SCOPE_ERROR)
    return error
