"""The authenticator chain: every request becomes a ``Principal``, once, here.

Starlette's contract: an authenticator returns ``None`` when its kind of credential is absent
and raises when it is present but bad. The chain keeps the first principal found. A bad
credential does not answer the request by itself: the error is kept on the scope and raised by
``require()`` only on routes that need a principal, so a stale cookie never breaks sign-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from watchword.domain.errors import InvalidCredential, WatchwordError
from watchword.domain.principal import ANONYMOUS, Principal
from watchword.services.sessions import SessionService
from watchword.web import metrics

PRINCIPAL = "watchword.principal"
AUTH_ERROR = "watchword.auth_error"


class Authenticator(Protocol):
    async def authenticate(self, conn: HTTPConnection) -> Principal | None: ...


class Deferred(Enum):
    """What an authenticator answers from memory when the request's credential is its own
    but deciding needs its coroutine (a store read, a refusal to record)."""

    TO_AUTHENTICATE = "to_authenticate"


DEFER = Deferred.TO_AUTHENTICATE

# An authenticator may also answer from memory, without a coroutine: an
# ``authenticate_cached(conn)`` method returns what ``authenticate`` would (a principal, None
# for no credential of its kind, or the same refusal, raised) when memory is enough, and
# ``DEFER`` when it is not. Profiled on one core, each coroutine between the server and a
# cached principal cost about as much as the principal's checks; the hot path has none.
CachedAnswer = Callable[[HTTPConnection], "Principal | Deferred | None"]


# An authenticator may name the request headers its credential travels in (lower-case, as
# ASGI gives them) in a ``headers`` attribute: the chain then skips it when none of them is
# present, so a cookie request does not pay for the bearer, key and signature checks ahead
# of it. One without the attribute (a query-string ticket) always runs.
AuthHeaders = frozenset[bytes]
# Which of those headers a request carries, as the plans are keyed: the one name (a single
# credential, the usual case, without building a frozenset per request) or the set of them.
PlanKey = bytes | AuthHeaders


def request_header(conn: HTTPConnection, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case, as ASGI gives names), as Starlette's
    ``conn.headers.get`` reads it, without building a ``Headers`` for the request: the
    authenticators read one or two headers each, on every request."""
    value = raw_request_header(conn, name)
    return None if value is None else value.decode("latin-1")


def raw_request_header(conn: HTTPConnection, name: bytes) -> bytes | None:
    """``request_header`` as the bytes the request carried."""
    for key, value in conn.scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


class AuthChain:
    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self.authenticators = list(authenticators)
        self._steps: list[tuple[Authenticator, AuthHeaders | None]] = [
            (a, getattr(a, "headers", None)) for a in self.authenticators
        ]
        # Every header some authenticator names, and for each set of them a request can
        # carry, the authenticators to run (at most 2 ** len(watched) plans).
        self._watched: AuthHeaders = frozenset().union(*(h for _, h in self._steps if h))
        self._plans: dict[PlanKey, list[Authenticator]] = {}
        self._cached_plans: dict[PlanKey, list[CachedAnswer | None]] = {}

    def _present(self, conn: HTTPConnection) -> PlanKey:
        watched = self._watched
        names = [name for name, _ in conn.scope["headers"] if name in watched]
        return names[0] if len(names) == 1 else frozenset(names)

    def _plan(self, present: PlanKey) -> list[Authenticator]:
        plan = self._plans.get(present)
        if plan is None:
            carried = frozenset((present,)) if isinstance(present, bytes) else present
            plan = self._plans[present] = [
                a for a, headers in self._steps if headers is None or headers & carried
            ]
        return plan

    def _cached_plan(self, present: PlanKey) -> list[CachedAnswer | None]:
        plan = self._cached_plans.get(present)
        if plan is None:
            plan = self._cached_plans[present] = [
                getattr(a, "authenticate_cached", None) for a in self._plan(present)
            ]
        return plan

    def authenticate_cached(self, conn: HTTPConnection) -> Principal | None:
        """``authenticate`` when every authenticator the request calls for answers from
        memory (the hot path, without a coroutine); None when one needs ``authenticate``."""
        for cached in self._cached_plan(self._present(conn)):
            if cached is None:
                return None
            principal = cached(conn)
            if principal is DEFER:
                return None
            if principal is not None:
                return principal
        return ANONYMOUS

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        """The principal, or ``ANONYMOUS``; raises the first credential error met."""
        for authenticator in self._plan(self._present(conn)):
            principal = await authenticator.authenticate(conn)
            if principal is not None:
                return principal
        return ANONYMOUS


class CookieAuthenticator:
    headers = frozenset({b"cookie"})

    def __init__(self, sessions: SessionService, cookie_name: str) -> None:
        self._sessions = sessions
        self._prefix = cookie_name.encode("latin-1") + b"="

    def authenticate_cached(self, conn: HTTPConnection) -> Principal | Deferred | None:
        secret = cookie_value(conn.scope, self._prefix)
        if not secret:
            return None
        principal = self._sessions.authenticate_secret_cached(secret)
        return DEFER if principal is None else _watchword_session(principal)

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        secret = cookie_value(conn.scope, self._prefix)
        if not secret:
            return None
        return _watchword_session(await self._sessions.authenticate_secret(secret))


def _watchword_session(principal: Principal) -> Principal:
    if principal.session is not None and principal.session.kind.startswith("compat"):
        # An /api/v1 session id travels in a plain cookie (no HttpOnly, no Secure, as the
        # exercise sets it): it must not open the Watchword API.
        raise InvalidCredential("The session cookie is not valid here.", code="invalid_session")
    return principal


def cookie_value(scope: Scope, prefix: bytes) -> str | None:
    """One cookie's value, by its ``name=`` as bytes, without parsing every cookie of the
    header (hot path).

    Same rules as Starlette's parser (pairs split on ';', surrounding quotes dropped); the
    last occurrence of a repeated name wins there too.
    """
    value: str | None = None
    for header, raw in scope["headers"]:
        if header != b"cookie":
            continue
        start = raw.rfind(prefix)
        if start < 0:
            continue
        # Found where a pair begins ("name=...", "...;name=...", "...; name=..."), it is the
        # last pair of that name: a later one would have been found instead. Found anywhere
        # else (inside another pair, after other spacing), the header is parsed pair by pair.
        if start == 0 or raw[start - 1] == SEMICOLON or raw[start - 2 : start] == b"; ":
            end = raw.find(b";", start)
            found = raw[start + len(prefix) : end] if end >= 0 else raw[start + len(prefix) :]
            value = found.decode("latin-1").strip().strip('"')
        else:
            found_in_pairs = _cookie_by_pairs(raw, prefix.decode("latin-1"))
            if found_in_pairs is not None:
                value = found_in_pairs
    return value


SEMICOLON = ord(";")


def _cookie_by_pairs(raw: bytes, prefix: str) -> str | None:
    last = None
    for pair in raw.decode("latin-1").split(";"):
        pair = pair.strip()
        if pair.startswith(prefix):
            last = pair[len(prefix) :].strip().strip('"')
    return last


class AuthenticationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it runs on every request, so it stays lean."""

    def __init__(self, app: ASGIApp, chains: Sequence[tuple[str, AuthChain | None]]) -> None:
        self.app = app
        # Longest prefix first; a ``None`` chain leaves the path to its own surface.
        self.chains = sorted(chains, key=lambda item: len(item[0]), reverse=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            for prefix, chain in self.chains:
                if path.startswith(prefix):
                    if chain is not None and not authenticate_scope_cached(scope, chain):
                        await authenticate_scope(scope, chain)
                    break
        await self.app(scope, receive, send)


async def authenticate_scope(scope: Scope, chain: AuthChain) -> None:
    """Put the chain's ``Principal`` (or its refusal) in the scope, for routes to read."""
    try:
        scope[PRINCIPAL] = await chain.authenticate(HTTPConnection(scope))
    except WatchwordError as exc:
        _refused(scope, exc)


def authenticate_scope_cached(scope: Scope, chain: AuthChain) -> bool:
    """``authenticate_scope`` from memory; False when it must be awaited instead."""
    try:
        principal = chain.authenticate_cached(HTTPConnection(scope))
    except WatchwordError as exc:
        _refused(scope, exc)
        return True
    if principal is None:
        return False
    scope[PRINCIPAL] = principal
    return True


def _refused(scope: Scope, exc: WatchwordError) -> None:
    scope[PRINCIPAL] = ANONYMOUS
    scope[AUTH_ERROR] = exc
    metrics.AUTH_REJECTED.labels(code=exc.code).inc()


def principal_of(conn: HTTPConnection) -> Principal:
    principal: Principal = conn.scope.get(PRINCIPAL, ANONYMOUS)
    return principal


def auth_error_of(conn: HTTPConnection) -> WatchwordError | None:
    error: WatchwordError | None = conn.scope.get(AUTH_ERROR)
    return error
