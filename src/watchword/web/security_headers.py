"""Headers every answer carries, for browsers: no sniffing, no referrer, no framing, and
HSTS when the public URL is HTTPS (the TLS proxy in front passes it on).

A header a response already set wins: the pages set their own Content-Security-Policy.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
)
HSTS = ("strict-transport-security", "max-age=31536000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = (*BASE_HEADERS, HSTS) if hsts else BASE_HEADERS
        # Encoded once: every answer passes here (ASGI header names are lower-case bytes).
        self._raw = tuple(
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                headers.extend(item for item in self._raw if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
