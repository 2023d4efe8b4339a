"""The session cookie, its flags computed once from settings."""

from __future__ import annotations

from starlette.responses import Response

from watchword.config import Settings


class SessionCookie:
    def __init__(self, settings: Settings) -> None:
        self.name = settings.effective_cookie_name
        self.secure = settings.secure_cookies
        self.max_age = settings.session_lifetime

    def set(self, response: Response, secret: str) -> None:
        response.set_cookie(
            self.name,
            secret,
            max_age=self.max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path="/", secure=self.secure, httponly=True, samesite="lax"
        )
