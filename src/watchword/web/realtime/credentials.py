"""How a socket proves who it is: the handshake authenticators and in-socket credentials.

At the handshake, in this order: a ticket (``?ticket=``), a bearer token offered as the
subprotocol ``bearer.<token>``, a bearer token in ``?access_token=`` (less safe: URLs end up in
proxies' logs), then whatever the app's chain found (the session cookie, which the gateway
accepts only from an allowed ``Origin``). With none of these, the client has a short deadline
to send ``{"type": "auth", ...}``. Each authenticator keeps the chain's contract: ``None`` when
its credential is absent, an error when it is present but bad. Credentials are never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from starlette.requests import HTTPConnection

from watchword.domain.apikeys import looks_like_api_key
from watchword.domain.clients import looks_like_opaque_token
from watchword.domain.clock import Clock
from watchword.domain.errors import InvalidCredential
from watchword.domain.principal import AuthMethod, Principal
from watchword.services.control import RevokedSessions
from watchword.stores.base import SessionStore
from watchword.web.realtime.protocol import BEARER_PREFIX, MAX_CREDENTIAL
from watchword.web.realtime.tickets import Tickets


class BearerVerifier(Protocol):
    async def authenticate_bearer(self, token: str) -> Principal:
        """The token's principal; raises ``InvalidCredential`` when it is not valid."""
        ...


class MachineVerifier(Protocol):
    """An API-key or opaque-token service: the principal of a presented secret."""

    async def __call__(self, presented: str) -> Principal: ...


def credential_binding(principal: Principal) -> str | None:
    """The credential a socket rests on besides its session, as the key its revocation
    names: ``api_key:<key id>``, ``jti:<token id>``, ``signing_key:<key id>``. A cookie
    socket rests on its session alone (``None``)."""
    credential_id = principal.credential_id
    if credential_id is None:
        return None
    prefix = {
        AuthMethod.API_KEY: "api_key",
        AuthMethod.BEARER_JWT: "jti",
        AuthMethod.SIGNATURE: "signing_key",
        AuthMethod.BEARER_OPAQUE: "opaque_token",
    }.get(principal.method)
    return None if prefix is None else f"{prefix}:{credential_id}"


class RealtimeCredentials:
    """Turns a ticket or a bearer token into a ``Principal``; raises ``InvalidCredential``."""

    def __init__(
        self,
        *,
        tickets: Tickets,
        sessions: SessionStore,
        revoked: RevokedSessions,
        clock: Clock,
        bearer: BearerVerifier | None,
        api_key: MachineVerifier | None = None,
        opaque_token: MachineVerifier | None = None,
    ) -> None:
        self.tickets = tickets
        self._sessions = sessions
        self._revoked = revoked
        self._clock = clock
        self._bearer = bearer
        self._api_key = api_key
        self._opaque_token = opaque_token

    async def from_ticket(self, ticket: str) -> Principal:
        grant = await self.tickets.redeem(ticket)
        if grant is None:
            raise InvalidCredential(
                "The ticket is unknown, used or expired.", code="invalid_ticket"
            )
        expires_at = grant.credential_expires_at
        if grant.session_id is not None:
            expires_at = await self._live_session_expiry(grant.session_id, expires_at)
        return Principal(
            kind="user",
            method=AuthMethod(grant.method),
            user_id=grant.user_id,
            session_id=grant.session_id,
            scopes=grant.scopes,
            expires_at=expires_at,
            credential_id=grant.credential_id,
        )

    async def _live_session_expiry(
        self, session_id: str, expires_at: datetime | None
    ) -> datetime | None:
        # The ticket outlives nothing: its session must still be live when it is redeemed.
        if session_id in self._revoked:
            raise InvalidCredential("The session has been revoked.", code="session_revoked")
        session = await self._sessions.get(session_id)
        now = self._clock.now()
        if session is None or session.revoked_at is not None:
            raise InvalidCredential("The session has been revoked.", code="session_revoked")
        if now >= session.expires_at:
            raise InvalidCredential("The session has expired.", code="session_expired")
        return session.expires_at if expires_at is None else min(expires_at, session.expires_at)

    async def from_token(self, token: str) -> Principal:
        """An access token, an API key or a client's opaque token: whatever a bearer header
        would carry (a client's principal is then refused for not being a user's)."""
        if not token or len(token) > MAX_CREDENTIAL:
            raise InvalidCredential("The token is malformed.", code="invalid_token")
        if self._api_key is not None and looks_like_api_key(token):
            return await self._api_key(token)
        if self._opaque_token is not None and looks_like_opaque_token(token):
            return await self._opaque_token(token)
        if self._bearer is None:
            raise InvalidCredential(
                "Bearer tokens are not available on this server.", code="invalid_token"
            )
        return await self._bearer.authenticate_bearer(token)

    async def verify(self, *, token: str | None, ticket: str | None) -> Principal:
        if ticket is not None:
            return await self.from_ticket(ticket)
        assert token is not None
        return await self.from_token(token)


class TicketAuthenticator:
    def __init__(self, credentials: RealtimeCredentials) -> None:
        self._credentials = credentials

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        ticket = conn.query_params.get("ticket")
        if ticket is None:
            return None
        return await self._credentials.from_ticket(ticket)


class SubprotocolBearerAuthenticator:
    """``Sec-WebSocket-Protocol: watchword.v1, bearer.<token>``: the token is never echoed."""

    def __init__(self, credentials: RealtimeCredentials) -> None:
        self._credentials = credentials

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        offered: list[str] = conn.scope.get("subprotocols") or []
        tokens = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
        if not tokens:
            return None
        if len(tokens) > 1:
            raise InvalidCredential("Offer one bearer token at most.", code="invalid_token")
        return await self._credentials.from_token(tokens[0])


class QueryTokenAuthenticator:
    """``?access_token=``: for clients that can set neither headers nor subprotocols."""

    def __init__(self, credentials: RealtimeCredentials) -> None:
        self._credentials = credentials

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        token = conn.query_params.get("access_token")
        if token is None:
            return None
        return await self._credentials.from_token(token)


__all__ = [
    "BearerVerifier",
    "MachineVerifier",
    "QueryTokenAuthenticator",
    "RealtimeCredentials",
    "SubprotocolBearerAuthenticator",
    "TicketAuthenticator",
    "credential_binding",
]
