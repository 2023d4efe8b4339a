"""The bearer access-token authenticator (RFC 6750 section 2.1, RFC 9068 tokens).

It claims only ``Authorization: Bearer <JWS>`` values (two dots) and Watchword refresh
tokens presented as bearers (refused: they are not access tokens). Any other bearer value is
left to the authenticators after it (API keys, opaque tokens); ``UnclaimedBearerAuthenticator``
closes the chain's bearer part: a bearer value nobody recognised is an invalid token (RFC 6750
section 3.1), never "no credential".
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from watchword.domain.principal import Principal
from watchword.domain.tokens import REFRESH_PREFIX, invalid_token, looks_like_jws
from watchword.services.tokens import TokenService
from watchword.web.authn import DEFER, Deferred, raw_request_header, request_header

SCHEME = "bearer"


def bearer_value(conn: HTTPConnection) -> str | None:
    """The credential of an ``Authorization: Bearer`` header, or None."""
    header = request_header(conn, b"authorization")
    if not header or len(header) < 8 or header[:6].lower() != SCHEME or header[6] != " ":
        return None
    value = header[7:].strip()
    return value or None


class BearerTokenAuthenticator:
    headers = frozenset({b"authorization"})

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    def authenticate_cached(self, conn: HTTPConnection) -> Principal | Deferred | None:
        raw = raw_request_header(conn, b"authorization")
        if raw is None:
            return None
        if raw[6:7] == b" " and raw[:6].lower() == b"bearer":
            # A token verified before is found by the bytes as sent: no decoding, no parsing
            # (a hit is byte for byte a token that passed them). A miss takes the long way.
            principal = self._tokens.authenticate_bearer_cached(raw[7:])
            if principal is not None:
                return principal
        value = _claimed(conn)
        if value is None:
            return None
        return self._tokens.authenticate_bearer_cached(value) or DEFER

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        value = _claimed(conn)
        if value is None:
            return None
        return await self._tokens.authenticate_bearer(value)


def _claimed(conn: HTTPConnection) -> str | None:
    """The request's bearer JWS, if it has one; a refresh token presented as one is refused."""
    value = bearer_value(conn)
    if value is None:
        return None
    if value.startswith(REFRESH_PREFIX):
        raise invalid_token("A refresh token is not an access token: use it at /v1/auth/refresh.")
    return value if looks_like_jws(value) else None


class UnclaimedBearerAuthenticator:
    """Placed after every authenticator that claims bearer values: whatever is left is not a
    token this server issued, whatever its shape."""

    headers = frozenset({b"authorization"})

    def authenticate_cached(self, conn: HTTPConnection) -> Principal | None:
        if request_header(conn, b"authorization") is None:
            return None
        if bearer_value(conn) is None and not _is_bearer_scheme(conn):
            return None
        raise invalid_token("The bearer token is not one this server issued.")

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return self.authenticate_cached(conn)


def _is_bearer_scheme(conn: HTTPConnection) -> bool:
    # ``Authorization: Bearer`` with an empty value is a malformed bearer credential too.
    header = request_header(conn, b"authorization") or ""
    return header.strip().lower() == SCHEME
