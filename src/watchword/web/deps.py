"""What routes declare: ``require(...)`` for a principal, ``context`` for the audit trail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from fastapi import Request
from starlette.requests import HTTPConnection

from watchword.domain.errors import (
    CsrfRejected,
    Forbidden,
    InsufficientScope,
    MfaRequired,
    NotAuthenticated,
)
from watchword.domain.principal import Principal
from watchword.domain.sessions import csrf_token_matches
from watchword.services.context import RequestContext
from watchword.web.authn import auth_error_of, principal_of

if TYPE_CHECKING:
    from watchword.services.container import Container

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER = "x-csrf-token"


def container_of(conn: HTTPConnection) -> Container:
    return cast("Container", conn.app.state.container)


def client_ip(conn: HTTPConnection) -> str | None:
    container = container_of(conn)
    if container.settings.trust_forwarded_for:
        forwarded = conn.headers.get("x-forwarded-for")
        if forwarded:
            # The last hop is the one our proxy appended; everything left of it is whatever
            # the client sent, and trusting it would let anyone pick their own rate-limit key.
            return forwarded.split(",")[-1].strip()[:64] or None
    return conn.client.host if conn.client else None


def context(request: Request) -> RequestContext:
    return RequestContext.of(client_ip(request), request.headers.get("user-agent"))


def origin_allowed(conn: HTTPConnection, origin: str) -> bool:
    settings = container_of(conn).settings
    own = settings.issuer
    return origin == own or origin in settings.allowed_origins


def check_origin(conn: HTTPConnection) -> None:
    """Where the browser says where a request comes from, it must be an allowed origin."""
    origin = conn.headers.get("origin")
    if origin is not None and not origin_allowed(conn, origin):
        raise CsrfRejected("The request's Origin is not allowed.")


def check_csrf(request: Request, principal: Principal) -> None:
    check_origin(request)
    assert principal.session_id is not None
    if not csrf_token_matches(
        principal.session_id, container_of(request).csrf_key, request.headers.get(CSRF_HEADER)
    ):
        raise CsrfRejected("Missing or wrong X-CSRF-Token header.")


def authenticated(conn: HTTPConnection) -> Principal:
    principal = principal_of(conn)
    if not principal.is_authenticated:
        raise auth_error_of(conn) or NotAuthenticated()
    return principal


async def _check_second_factor(request: Request, principal: Principal) -> None:
    """WATCHWORD_MFA_REQUIRED_ROLES: a session must have been signed in with a second factor.
    A principal without a session (an API key, a client) is judged by its scopes alone."""
    if principal.session_id is None:
        return
    info = await container_of(request).step_up.auth_info(principal)
    if info is None or "mfa" not in info[1]:
        raise MfaRequired()


def require(*scopes: str, role: str | None = None) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: an authenticated principal holding ``scopes`` (and ``role``), with the
    CSRF check applied to unsafe requests authenticated by the cookie."""
    needed = frozenset(scopes)

    async def dependency(request: Request) -> Principal:
        principal = authenticated(request)
        if principal.needs_csrf and request.method not in SAFE_METHODS:
            check_csrf(request, principal)
        if role is not None and not principal.has_role(role):
            raise Forbidden(f"This needs the {role!r} role.")
        if role is not None and role in container_of(request).settings.mfa_required_roles:
            await _check_second_factor(request, principal)
        missing = principal.missing_scopes(needed)
        if missing:
            raise InsufficientScope(missing)
        return principal

    return dependency
