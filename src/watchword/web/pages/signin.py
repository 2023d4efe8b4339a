"""The browser sign-in step, reusable by any flow that needs a person signed in first.

A flow that needs a signed-in browser (the account page, an OAuth2 authorization request)
sends it to ``login_url(next_path)``; after a successful sign-in the browser is sent with a 303
to that path, but only when ``safe_next`` accepts it as a path on this server.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse

from watchword.domain.errors import NotFound
from watchword.domain.principal import AuthMethod
from watchword.domain.sessions import RevokeReason
from watchword.services.accounts import SecondFactorNeeded, SignIn
from watchword.web.authn import principal_of
from watchword.web.deps import container_of, request_context
from watchword.web.routes.auth import finish_second_factor

DEFAULT_NEXT = "/account"
MAX_NEXT = 2048


def safe_next(value: str | None, default: str = DEFAULT_NEXT) -> str:
    """``value`` when it is a path on this server, else ``default``: never an open redirect.

    Refused: anything with a scheme or host (``https://x``, ``javascript:``), protocol-relative
    and backslash forms browsers read as a host (``//x``, ``/\\x``), control characters.
    """
    if not value or len(value) > MAX_NEXT:
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_url(
    next_path: str | None = None, *, login_hint: str | None = None, again: bool = False
) -> str:
    """Where to send a browser that must sign in before reaching ``next_path``.
    ``login_hint`` fills the email field; ``again`` shows the form even to a signed-in
    browser (an app asked for a fresh sign-in: OpenID Connect ``prompt=login``)."""
    target = safe_next(next_path, "")
    query = {"next": target, "login_hint": login_hint or "", "again": "1" if again else ""}
    encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v)
    return "/login" + (f"?{encoded}" if encoded else "")


def redirect_to_login(
    next_path: str | None = None, *, login_hint: str | None = None, again: bool = False
) -> RedirectResponse:
    return RedirectResponse(
        login_url(next_path, login_hint=login_hint, again=again), status_code=303
    )


async def sign_in(
    request: Request,
    *,
    email: str,
    password: str,
    device_name: str | None = None,
    next_path: str | None = None,
) -> tuple[SignIn, RedirectResponse]:
    """Check the credentials (throttled and audited by the account service, as the API does),
    start a cookie session and answer 303 to ``next_path`` when it is safe, else /account.

    Raises what the service raises: ``InvalidCredentials``, ``RateLimited``,
    ``AccountDisabled``, ``StoreUnavailable``. The caller renders those.
    """
    container = container_of(request)
    ctx = request_context(request)
    signin = await container.accounts.login(
        email=email, password=password, device_name=device_name or None, ctx=ctx
    )
    if isinstance(signin, SecondFactorNeeded):
        raise SecondFactorStep(signin.challenge, signin.methods)
    return signin, await start_browser_session(request, signin, next_path)


class SecondFactorStep(Exception):
    """The password was right and the account has a second factor: the page asks for it."""

    def __init__(self, challenge: str, methods: tuple[str, ...] = ()) -> None:
        super().__init__("a second factor is needed")
        self.challenge = challenge
        self.methods = methods


async def finish_sign_in(
    request: Request, *, challenge: str, code: str, next_path: str | None = None
) -> RedirectResponse:
    """The second step, as the API's ``POST /v1/auth/mfa`` does it (same checks, throttles
    and audit), ending in a cookie session and a 303 to ``next_path`` when it is safe."""
    signin, _ = await finish_second_factor(request, challenge, code, request_context(request))
    return await start_browser_session(request, signin, next_path)


async def start_browser_session(
    request: Request, signin: SignIn, next_path: str | None
) -> RedirectResponse:
    """The cookie of ``signin``'s session, and rotation: the browser's previous session ends."""
    container = container_of(request)
    ctx = request_context(request)
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    assert signin.new.secret is not None
    request.app.state.session_cookie.set(response, signin.new.secret)
    # Rotation at sign-in, as the API does: the browser's previous session ends now.
    previous = principal_of(request)
    if previous.method is AuthMethod.COOKIE and previous.session_id not in (
        None,
        signin.session.id,
    ):
        with contextlib.suppress(NotFound):
            await container.sessions.revoke(previous.session_id, RevokeReason.REPLACED, ctx)
    return response


__all__ = [
    "DEFAULT_NEXT",
    "SecondFactorStep",
    "finish_sign_in",
    "login_url",
    "redirect_to_login",
    "safe_next",
    "sign_in",
]
