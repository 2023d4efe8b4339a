"""Refuses request bodies over the configured size with 413, before they are buffered."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchword.web.errors import PayloadTooLarge, watchword_error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    response = watchword_error_response(PayloadTooLarge(self._message()))
                    await response(scope, receive, send)
                    return
                break
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise PayloadTooLarge(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                # A body read that failed here surfaces in the app as some other error (FastAPI
                # turns it into a 400): drop that answer, the 413 below replaces it.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused or started:
                raise
        if refused and not started:
            response = watchword_error_response(PayloadTooLarge(self._message()))
            await response(scope, receive, send)

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."
