"""RFC 7662 token introspection and RFC 7009 token revocation over every token kind Watchword
issues: JWT access tokens, opaque access tokens, refresh tokens and API keys.

Privacy rule for introspection (the caller is always an authenticated client):

* a client sees the tokens issued to it (its JWT and opaque access tokens);
* a client holding the ``introspect`` scope (a resource server) sees every kind: user access
  tokens, refresh tokens, API keys and other clients' tokens;
* anything else answers ``{"active": false}``, exactly like an unknown, expired or revoked
  token, so a caller learns nothing about tokens it may not see.

Revocation rule: presenting a token proves possession, which is enough to revoke it (a thief
revoking a stolen token harms nobody); client credentials, when sent, must be valid. Unknown
and already-dead tokens answer 200 as RFC 7009 section 2.2 asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from watchword.domain.apikeys import API_KEY_PREFIX
from watchword.domain.audit import AuditType
from watchword.domain.clients import OPAQUE_TOKEN_PREFIX, OAuthClient
from watchword.domain.clock import Clock, sha256_hex
from watchword.domain.errors import InvalidInput, NotFound, WatchwordError
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.domain.tokens import (
    ACTIVE,
    REFRESH_PREFIX,
    RefreshToken,
    looks_like_jws,
    plausible_refresh,
)
from watchword.services.apikeys import ApiKeyService
from watchword.services.audit import Auditor
from watchword.services.clients import ClientService
from watchword.services.context import RequestContext
from watchword.services.sessions import SessionService
from watchword.services.tokens import TokenService
from watchword.stores.base import Database
from watchword.stores.tokens import RefreshTokenStore


class UnauthorizedClient(InvalidInput):
    """RFC 7009 section 2.1: the authenticated client asked to revoke a token that was not
    issued to it (answered 400 ``unauthorized_client``, RFC 6749 section 5.2)."""

    code = "unauthorized_client"
    default_message = (
        "This token was not issued to the authenticated client; it has not been revoked."
    )


INTROSPECT_SCOPE = "introspect"
INACTIVE: dict[str, Any] = {"active": False}


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


class TokenIntrospection:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        tokens: TokenService,
        refresh_tokens: RefreshTokenStore,
        sessions: SessionService,
        api_keys: ApiKeyService,
        clients: ClientService,
        auditor: Auditor,
        issuer: str,
        audience: str,
    ) -> None:
        self._db = db
        self._clock = clock
        self._tokens = tokens
        self._refresh = refresh_tokens
        self._sessions = sessions
        self._api_keys = api_keys
        self._clients = clients
        self._auditor = auditor
        self._issuer = issuer
        self._audience = audience
        # OpenID Connect: ends an app's refresh token (its grant); False for another client.
        self.app_refresh: (
            Callable[[RefreshToken, OAuthClient | None, RequestContext], Awaitable[bool]] | None
        ) = None

    @staticmethod
    def check_hint(hint: str | None) -> None:
        # RFC 7009 2.2.1 / RFC 7662 2.1: an unknown hint may be ignored; a malformed one is not.
        if hint is not None and (not hint or len(hint) > 64 or not hint.isascii()):
            raise InvalidInput("token_type_hint is malformed.")

    # -- RFC 7662 -----------------------------------------------------------------------------

    async def introspect(self, token: str, caller: OAuthClient) -> dict[str, Any]:
        sees_all = INTROSPECT_SCOPE in caller.scopes
        if token.startswith(OPAQUE_TOKEN_PREFIX):
            return await self._opaque(token, caller, sees_all)
        if token.startswith(API_KEY_PREFIX):
            return await self._api_key(token) if sees_all else INACTIVE
        if token.startswith(REFRESH_PREFIX):
            return await self._refresh_token(token) if sees_all else INACTIVE
        if looks_like_jws(token):
            return await self._jwt(token, caller, sees_all)
        return INACTIVE

    async def _opaque(self, token: str, caller: OAuthClient, sees_all: bool) -> dict[str, Any]:
        found = await self._clients.find_opaque(token)
        if found is None:
            return INACTIVE
        row, client = found
        if not (sees_all or client.id == caller.id):
            return INACTIVE
        if not row.is_active(self._clock.now()) or client.disabled:
            return INACTIVE
        return {
            "active": True,
            "token_type": "Bearer",  # RFC 6749 section 7.1 type, as RFC 7662 asks
            "scope": " ".join(sorted(row.scopes & client.scopes)),
            "client_id": client.id,
            "sub": client.id,
            "iss": self._issuer,
            "iat": _ts(row.created_at),
            "exp": _ts(row.expires_at),
        }

    async def _jwt(self, token: str, caller: OAuthClient, sees_all: bool) -> dict[str, Any]:
        try:
            principal = await self._tokens.authenticate_bearer(token)
        except WatchwordError:
            return INACTIVE
        if not (sees_all or (principal.kind == "client" and principal.client_id == caller.id)):
            return INACTIVE
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",  # RFC 6749 section 7.1 type, as RFC 7662 asks
            "scope": " ".join(sorted(principal.scopes)),
            "sub": principal.user_id or principal.client_id,
            "iss": self._issuer,
            "aud": self._audience,
            "exp": _ts(principal.expires_at),
            "jti": principal.credential_id,
        }
        if principal.client_id:
            body["client_id"] = principal.client_id
        if principal.session_id:
            body["sid"] = principal.session_id
        if principal.user is not None:
            body["username"] = principal.user.email
        return body

    async def _api_key(self, token: str) -> dict[str, Any]:
        found = await self._api_keys.lookup(token)
        if found is None:
            return INACTIVE
        key, user = found
        now = self._clock.now()
        if key.revoked_at is not None or key.is_expired(now) or user.disabled:
            return INACTIVE
        principal = self._api_keys.principal_for(key, user)
        return {
            "active": True,
            "token_type": "Bearer",  # presented as ``Authorization: Bearer`` (RFC 6750)
            "scope": " ".join(sorted(principal.scopes)),
            "sub": user.id,
            "username": user.email,
            "iss": self._issuer,
            "iat": _ts(key.created_at),
            "exp": _ts(key.expires_at),
        }

    async def _refresh_token(self, token: str) -> dict[str, Any]:
        if not plausible_refresh(token):
            return INACTIVE
        row = await self._refresh.get_by_hash(sha256_hex(token))
        if row is None or row.state != ACTIVE:
            return INACTIVE
        session = await self._db.sessions.get(row.session_id)
        now = self._clock.now()
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            return INACTIVE
        user = await self._db.users.get(session.user_id)
        if user is None or user.disabled:
            return INACTIVE
        return {
            "active": True,
            # No token_type: RFC 7662 allows only RFC 6749 section 7.1 access token types,
            # and a refresh token is none of them.
            "sub": user.id,
            "username": user.email,
            "sid": session.id,
            "iss": self._issuer,
            "iat": _ts(row.created_at),
            "exp": _ts(session.expires_at),
        }

    # -- RFC 7009 -----------------------------------------------------------------------------

    async def revoke(self, token: str, caller: OAuthClient | None, ctx: RequestContext) -> None:
        """RFC 7009 section 2.1. Without client authentication, possession is enough: the
        holder of a token (a user's refresh token, API key or access token) may end it. A
        client that authenticates may revoke only tokens issued to it; another credential's
        token stays valid and ``UnauthorizedClient`` says why. Unknown, expired or already
        revoked tokens change nothing and answer 200 (section 2.2)."""
        actor = caller.id if caller is not None else None

        def allowed(issued_to: str | None) -> None:
            if caller is not None and issued_to != caller.id:
                raise UnauthorizedClient()

        if token.startswith(OPAQUE_TOKEN_PREFIX):
            found = await self._clients.find_opaque(token)
            if found is not None:
                allowed(found[0].client_id)
                await self._clients.revoke_opaque(found[0], ctx, actor)
        elif token.startswith(API_KEY_PREFIX):
            found_key = await self._api_keys.lookup(token)
            if found_key is not None and found_key[0].revoked_at is None:
                allowed(None)
                await self._revoke_quietly(
                    self._api_keys.revoke(found_key[0].id, ctx, actor_id=actor)
                )
        elif token.startswith(REFRESH_PREFIX):
            if plausible_refresh(token):
                row = await self._refresh.get_by_hash(sha256_hex(token))
                if row is not None and row.grant_id is not None:
                    # An app's refresh token: its grant ends, never the person's session.
                    if self.app_refresh is not None and not await self.app_refresh(
                        row, caller, ctx
                    ):
                        raise UnauthorizedClient()
                elif row is not None:
                    allowed(None)
                    # The whole session goes: every refresh and access token of it.
                    await self._revoke_quietly(
                        self._sessions.revoke(
                            row.session_id, RevokeReason.REVOKED, ctx, actor_id=actor
                        )
                    )
        elif looks_like_jws(token):
            try:
                principal: Principal = await self._tokens.authenticate_bearer(token)
            except WatchwordError:
                return
            allowed(principal.client_id)
            if principal.credential_id and principal.expires_at is not None:
                await self._tokens.revoke_jti(principal.credential_id, principal.expires_at)
                await self._auditor.record(
                    AuditType.CREDENTIAL_REVOKED,
                    ctx,
                    user_id=principal.user_id,
                    session_id=principal.session_id,
                    actor_id=actor,
                    kind="access_token",
                    credential_id=principal.credential_id,
                )

    @staticmethod
    async def _revoke_quietly(revocation: Any) -> None:
        try:
            await revocation
        except NotFound:
            return  # revoked meanwhile: the outcome the caller asked for
