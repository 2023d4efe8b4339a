"""What every page answer carries: a strict CSP, and CSRF tokens for forms.

A signed-in browser's forms carry the same token the API takes in ``X-CSRF-Token`` (bound to
the session); ``PageRoute`` hands the form's token to ``require()``, so one check decides both.
Forms shown before there is a session (sign-in, sign-up) carry a token bound to a random
pre-session cookie (double submit, keyed with the server's CSRF key).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from watchword.domain.errors import CsrfRejected
from watchword.web.deps import check_origin, container_of

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
FORM_FIELD = "csrf_token"
PRE_SESSION_COOKIE = "watchword_form"


def page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _pre_session_cookie_name(request: Request) -> str:
    secure: bool = request.app.state.session_cookie.secure
    return ("__Host-" if secure else "") + PRE_SESSION_COOKIE


def _mac(request: Request, nonce: str) -> str:
    key = container_of(request).csrf_key
    return hmac.new(key, b"pages-form\x00" + nonce.encode(), hashlib.sha256).hexdigest()


def pre_session_token(request: Request) -> tuple[str, str | None]:
    """(the form token, a new cookie nonce to set or ``None`` when the browser has one)."""
    nonce = request.cookies.get(_pre_session_cookie_name(request))
    if nonce and 16 <= len(nonce) <= 128:
        return _mac(request, nonce), None
    nonce = secrets.token_urlsafe(32)
    return _mac(request, nonce), nonce


def set_pre_session_cookie(request: Request, response: Response, nonce: str | None) -> None:
    if nonce is None:
        return
    response.set_cookie(
        _pre_session_cookie_name(request),
        nonce,
        path="/",
        secure=request.app.state.session_cookie.secure,
        httponly=True,
        samesite="strict",
    )


def check_pre_session_token(request: Request, presented: str | None) -> None:
    """Refuse a sign-in or sign-up post from another site: wrong origin or token."""
    check_origin(request)
    nonce = request.cookies.get(_pre_session_cookie_name(request))
    if not nonce or not presented or not hmac.compare_digest(_mac(request, nonce), presented):
        raise CsrfRejected("The form has expired or did not come from this site. Try again.")
