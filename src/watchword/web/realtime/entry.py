"""The gateway's socket, served from the outer edge of the app rather than through its stack.

A WebSocket lives for hours, and every layer it passes through keeps a suspended frame, and
often a copy of the scope, for all that time: FastAPI's own outer layers (error page,
telemetry hooks, body limit), its routing and dependency exit stack, exception handlers and
every HTTP middleware. ``RealtimeApp`` therefore hands every
WebSocket to ``RealtimeEntry`` before any of them. Sockets on the gateway's path go straight
to the gateway, which authenticates them with the same chain the middleware runs; any other
socket goes down the stack as usual. The route stays declared in the app,
so the app describes the same surface either way.

This layer also offers the socket's ``FrameWriter`` (the fan-out fast path), which needs the
server's own ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from watchword.web.realtime.client import Gateway
from watchword.web.realtime.transport.frames import EXTENSION, frame_writer, writer_for


class RealtimeEntry:
    def __init__(self, app: ASGIApp, *, root: Any, path: str) -> None:
        self.app = app  # the app's own stack, for every other socket
        self.root = root  # the application: its state holds the chain and the gateway
        self.path = path

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: it returns the one to await (the stack's or the gateway's), so no
        # frame of its own stays suspended for the socket's life.
        writer = writer_for(send)
        if writer is not None:
            # The server builds a scope per connection: extended in place, not copied (a
            # copy would live as long as the socket).
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[EXTENSION] = writer
        if scope["path"] != self.path:
            return self.app(scope, receive, send)
        scope["app"] = self.root
        state = self.root.state
        gateway: Gateway = state.realtime.gateway
        return gateway.serve(WebSocket(scope, receive, send), state.auth_chain)


class RealtimeApp(FastAPI):
    """A FastAPI app whose WebSockets enter through ``realtime_entry``, once it is set."""

    realtime_entry: RealtimeEntry | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.realtime_entry
        if entry is not None and scope["type"] == "websocket":
            try:
                await entry(scope, receive, send)
            finally:
                writer = frame_writer(scope)
                if writer is not None:
                    writer.release()  # the socket is then freed as soon as it closes
            return
        await super().__call__(scope, receive, send)

    async def through_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app as FastAPI serves it: its whole middleware stack."""
        await super().__call__(scope, receive, send)
