"""What routes declare: ``require(...)`` for a principal, ``context`` for the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from fastapi import Request
from starlette.requests import HTTPConnection

from watchword.domain.errors import (
    CsrfRejected,
    InsufficientScope,
    MfaEnrolmentRequired,
    MfaRequired,
    NotAuthenticated,
    SessionRequired,
)
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.sessions import csrf_token_matches
from watchword.services.context import RequestContext
from watchword.web.authn import auth_error_of, principal_of
from watchword.web.client_address import client_address

if TYPE_CHECKING:
    from watchword.services.container import Container

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER = "x-csrf-token"


def container_of(conn: HTTPConnection) -> Container:
    return cast("Container", conn.app.state.container)


def client_ip(conn: HTTPConnection) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy says (client_address)."""
    settings = container_of(conn).settings
    return client_address(conn, settings.proxy_networks, any_peer=settings.trust_forwarded_for)


def request_context(request: Request) -> RequestContext:
    """Who is asking, for audit lines: the client's address and user agent."""
    return RequestContext.of(client_ip(request), request.headers.get("user-agent"))


async def context(request: Request) -> RequestContext:
    """``request_context`` as a dependency. A coroutine, though it never waits: FastAPI runs
    a plain function dependency in a worker thread, a thread hop per request (and a thread
    start when none is idle, which the event loop waits for)."""
    return request_context(request)


def origin_allowed(conn: HTTPConnection, origin: str) -> bool:
    settings = container_of(conn).settings
    own = settings.issuer
    return origin == own or origin in settings.allowed_origins


def check_origin(conn: HTTPConnection) -> None:
    """Where the browser says where a request comes from, it must be an allowed origin."""
    origin = conn.headers.get("origin")
    if origin is not None and not origin_allowed(conn, origin):
        raise CsrfRejected("The request's Origin is not allowed.")


def check_csrf(request: HTTPConnection, principal: Principal) -> None:
    # Fetch metadata (the browser's own word): a cookie sent by another site's page is
    # refused whatever token it carries.
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRejected("A cross-site request may not use the session cookie.")
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


# Callers that present their credential in an Authorization-style header get an RFC 6750
# challenge naming the scope they lack; a cookie or a signed request has nothing to retry with.
_CHALLENGED = frozenset({AuthMethod.BEARER_JWT, AuthMethod.BEARER_OPAQUE, AuthMethod.API_KEY})


def is_person_session(principal: Principal) -> bool:
    """A person at a live session: the session cookie, or a user's access token naming its
    session (``sid``; revoked sessions never get this far). API keys, client tokens and
    signed requests are delegations and never are."""
    if principal.kind != "user" or principal.session_id is None or principal.client_id:
        return False
    return principal.method in (AuthMethod.COOKIE, AuthMethod.BEARER_JWT)


def check_scopes(principal: Principal, needed: frozenset[str]) -> None:
    """The one permission rule: the principal's effective scopes (what the credential
    carries, within what its owner's roles grant now) must hold ``needed``."""
    missing = principal.missing_scopes(needed)
    if missing:
        raise InsufficientScope(missing, challenge=principal.method in _CHALLENGED)


def _needs_second_factor(request: HTTPConnection, needed: frozenset[str]) -> bool:
    """WATCHWORD_MFA_REQUIRED_ROLES: a route needing a scope that only such a role grants
    (``admin`` for the admin role) needs a session signed in with a second factor."""
    container = container_of(request)
    roles = container.settings.mfa_required_roles
    if not roles:
        return False
    policy = container.scope_policy
    guarded = policy.scopes_for_roles(roles) - policy.scopes_for_roles(())
    return bool(needed & guarded)


async def _check_second_factor(request: Request, principal: Principal) -> None:
    """WATCHWORD_MFA_REQUIRED_ROLES: a session must have been signed in with a second factor.
    A principal without a session (an API key, a client) is judged by its scopes alone."""
    if principal.session_id is None:
        return
    info = await container_of(request).step_up.auth_info(principal)
    if info is None or "mfa" not in info[1]:
        raise MfaRequired()


async def _check_enrolled(request: Request, principal: Principal) -> None:
    """WATCHWORD_MFA_REQUIRED_ROLES: a user holding such a role with no second factor yet
    (neither TOTP nor a passkey) may only enrol one. Read from the store on each request of
    such a user (few, and a removed factor must count at once), never for anyone else."""
    if not _enrolment_applies(request, principal):
        return
    assert principal.user_id is not None
    if not await container_of(request).mfa.is_on(principal.user_id):
        raise MfaEnrolmentRequired()


def _enrolment_applies(request: HTTPConnection, principal: Principal) -> bool:
    """WATCHWORD_MFA_REQUIRED_ROLES: the principal is a user holding such a role, so whether
    a second factor is enrolled must be read."""
    roles = container_of(request).settings.mfa_required_roles
    return (
        bool(roles) and principal.user_id is not None and bool(principal.roles.intersection(roles))
    )


def require(*scopes: str, session: bool = False, enrolling: bool = False) -> Requirement:
    """A dependency: an authenticated principal holding ``scopes``, with the CSRF check
    applied to unsafe requests authenticated by the cookie. ``session=True``: only a person's
    live session will do (operations that change how the account signs in).
    ``enrolling=True``: the route stays open to a user whose role needs a second factor and
    who has none yet (enrolling one, and what that takes: who am I, step-up, sign out)."""
    return Requirement(frozenset(scopes), session=session, enrolling=enrolling)


class Requirement:
    """What ``require`` returns: awaited as a FastAPI dependency, or decided at once by
    ``settled`` when no second-factor rule needs the store (the hot routes)."""

    def __init__(self, needed: frozenset[str], *, session: bool, enrolling: bool) -> None:
        self.needed = needed
        self.session = session
        self.enrolling = enrolling

    def settled(self, request: HTTPConnection) -> Principal | None:
        """The principal, or the refusal raised, as awaiting the dependency decides them;
        None when a second-factor rule needs the store (then await it)."""
        principal = self._admitted(request)
        if not self.enrolling and _enrolment_applies(request, principal):
            return None
        if self.needed and _needs_second_factor(request, self.needed):
            if principal.session_id is not None:
                return None
        return self._within_scopes(principal)

    async def __call__(self, request: Request) -> Principal:
        principal = self._admitted(request)
        if not self.enrolling:
            await _check_enrolled(request, principal)
        if self.needed and _needs_second_factor(request, self.needed):
            await _check_second_factor(request, principal)
        return self._within_scopes(principal)

    def _admitted(self, request: HTTPConnection) -> Principal:
        principal = authenticated(request)
        if principal.needs_csrf and request.scope["method"] not in SAFE_METHODS:
            check_csrf(request, principal)
        if self.session and not is_person_session(principal):
            raise SessionRequired()
        return principal

    def _within_scopes(self, principal: Principal) -> Principal:
        if self.needed:  # nothing is missing from an empty set
            check_scopes(principal, self.needed)
        return principal
