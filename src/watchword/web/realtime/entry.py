"""The gateway's socket, served from the outer edge of the app rather than through its stack.

A WebSocket lives for hours, and every layer it passes through keeps a suspended frame, and
often a copy of the scope, for all that time: FastAPI's routing and dependency exit stack,
exception handlers and every HTTP middleware, about 11 KiB per idle socket. Sockets on the
gateway's path are therefore authenticated here, by the same chain the middleware runs, and
handed straight to the gateway; everything else goes down the stack as usual. The route stays
declared in the app, so the app describes the same surface either way.

This layer also offers the socket's ``FrameWriter`` (the fan-out fast path), which needs the
server's own ``send``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from watchword.web.authn import authenticate_scope
from watchword.web.realtime.transport.frames import EXTENSION, writer_for


class RealtimeEntry:
    def __init__(self, app: ASGIApp, *, root: Any, path: str) -> None:
        self.app = app
        self.root = root  # the application: its state holds the chain and the gateway
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        writer = writer_for(send)
        if writer is not None:
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), EXTENSION: writer}}
        if scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.root
        state = self.root.state
        await authenticate_scope(scope, state.auth_chain)
        await state.realtime.gateway.serve(WebSocket(scope, receive, send))
