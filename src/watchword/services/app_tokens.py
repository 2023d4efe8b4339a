"""Tokens for apps that sign people in: the authorization-code and refresh-token grants
(RFC 6749 4.1.3 and 6), ID tokens (OpenID Connect Core 1.0 section 2), UserInfo (section 5.3)
and what ends them.

Every app token rides on the person's Watchword session: the access token names it in
``sid`` (revoked sessions are refused everywhere through the revocation feed), the refresh
token belongs to the session's refresh family (``refresh_tokens`` with the grant's id) and is
redeemed only while the session lives. Reuse of a rotated app refresh token is theft, as for
the person's own tokens: the session ends, except for a retry of the live token's predecessor
within ``refresh_reuse_grace``, which gets the live pair again (``TokenService.answer_again``,
the same rule for both). Reuse of a code ends only the grant it opened.

Authlib's ``AuthorizationServer`` grant classes are not used: they own token storage and
persistence through their own model mixins, and cannot put an app's refresh token into the
session's family or answer reuse by ending the session. The protocol checks that are not
Watchword's own come from Authlib (``create_s256_code_challenge``, the RFC 7636 verifier
pattern, ``create_half_hash`` for ``at_hash``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from authlib.oidc.core.util import create_half_hash

from watchword.domain.app_grants import AppGrant, plausible_code
from watchword.domain.audit import AuditType
from watchword.domain.clients import GrantType, OAuthClient
from watchword.domain.clock import Clock, Randomness, sha256_hex
from watchword.domain.errors import InvalidInput, StoreUnavailable
from watchword.domain.scopes import InvalidScope, ScopePolicy, parse_scope
from watchword.domain.sessions import Session
from watchword.domain.tokens import (
    ACTIVE,
    REVOKED,
    ROTATED,
    RefreshToken,
    invalid_grant,
    new_refresh_secret,
    plausible_refresh,
)
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.keys import KeyService
from watchword.services.sessions import SessionService
from watchword.services.tokens import IssuedToken, TokenService
from watchword.stores.app_grants import AppConsentStore, AppGrantStore
from watchword.stores.tokens import RefreshTokenStore

log = logging.getLogger("watchword.oidc")

ID_TOKEN_TTL = 300


class UnauthorizedClient(InvalidInput):
    """RFC 6749 5.2 ``unauthorized_client``: the client may not use this grant type."""

    code = "unauthorized_client"


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    client: OAuthClient
    scopes: frozenset[str]
    consented_at: datetime | None
    live_grants: int


class AppTokens:
    def __init__(
        self,
        *,
        tokens: TokenService,
        id_keys: KeyService,
        sessions: SessionService,
        grants: AppGrantStore,
        consents: AppConsentStore,
        refresh: RefreshTokenStore,
        scope_policy: ScopePolicy,
        auditor: Auditor,
        clock: Clock,
        randomness: Randomness,
        issuer: str,
    ) -> None:
        self._tokens = tokens
        self.id_keys = id_keys
        self._sessions = sessions
        self._grants = grants
        self._consents = consents
        self._refresh = refresh
        self._scopes = scope_policy
        self._auditor = auditor
        self._clock = clock
        self._random = randomness
        self.issuer = issuer

    # -- RFC 6749 4.1.3: the code for tokens ------------------------------------------------

    async def redeem_code(
        self,
        client: OAuthClient,
        code: str | None,
        redirect_uri: str | None,
        code_verifier: str | None,
        ctx: RequestContext,
    ) -> dict[str, Any]:
        if not client.allows(GrantType.AUTHORIZATION_CODE):
            raise UnauthorizedClient("This client may not use the authorization_code grant.")
        if not code:
            raise InvalidInput("The code parameter is required.")
        if not plausible_code(code):
            raise invalid_grant("The code is not valid.")
        grant = await self._grants.get_by_code(sha256_hex(code))
        now = self._clock.now()
        if grant is None:
            raise invalid_grant("The code is not valid.")
        if grant.client_id != client.id:
            raise invalid_grant("The code was issued to another client.")
        if grant.code_used_at is not None or grant.revoked_at is not None:
            # RFC 6749 4.1.2: a code used twice revokes what was issued from it.
            await self.revoke_grant(grant.id, ctx, reason="code_reuse")
            raise invalid_grant("The code was already used: the tokens issued from it are revoked.")
        if now >= grant.code_expires_at:
            raise invalid_grant("The code has expired.")
        if redirect_uri != grant.redirect_uri:
            raise invalid_grant("The redirect_uri does not match the authorization request.")
        self._check_verifier(grant, code_verifier, client)
        if not await self._grants.redeem(grant.id, now):
            await self.revoke_grant(grant.id, ctx, reason="code_reuse")
            raise invalid_grant("The code was already used: the tokens issued from it are revoked.")
        session, user = await self._tokens.live_session(grant.session_id)
        body = await self._issue(client, grant, session, user, first=True)
        await self._auditor.record(
            AuditType.CREDENTIAL_USED,
            ctx,
            user_id=user.id,
            session_id=session.id,
            kind="client",
            credential_id=client.id,
            grant="authorization_code",
            scopes=sorted(grant.scopes),
        )
        return body

    @staticmethod
    def _check_verifier(grant: AppGrant, verifier: str | None, client: OAuthClient) -> None:
        if grant.code_challenge is None:
            if verifier is not None:
                raise invalid_grant("No code_challenge was sent with the authorization request.")
            if client.is_public:  # never issued, but a public client must prove possession
                raise invalid_grant("A public client must use PKCE.")
            return
        if verifier is None:
            raise InvalidInput("The code_verifier parameter is required (PKCE).")
        if not CODE_VERIFIER_PATTERN.match(verifier):
            raise invalid_grant("The code_verifier is malformed (RFC 7636 4.1).")
        expected = create_s256_code_challenge(verifier)
        if not hmac.compare_digest(expected.encode(), grant.code_challenge.encode()):
            raise invalid_grant("The code_verifier does not match the code_challenge.")

    # -- RFC 6749 6: refreshing ------------------------------------------------------------

    async def refresh(
        self, client: OAuthClient, refresh_token: str | None, scope: str | None, ctx: RequestContext
    ) -> dict[str, Any]:
        if not client.allows(GrantType.REFRESH_TOKEN):
            raise UnauthorizedClient("This client may not use the refresh_token grant.")
        if not refresh_token:
            raise InvalidInput("The refresh_token parameter is required.")
        if not plausible_refresh(refresh_token):
            raise invalid_grant("The refresh token is malformed.")
        record = await self._refresh.get_by_hash(sha256_hex(refresh_token))
        if record is None or record.grant_id is None:
            raise invalid_grant("The refresh token is not valid.")
        grant = await self._grants.get(record.grant_id)
        if grant is None or grant.client_id != client.id:
            raise invalid_grant("The refresh token was issued to another client.")
        if record.state == REVOKED or grant.revoked_at is not None:
            raise invalid_grant("The refresh token has been revoked.")
        session, user = await self._tokens.live_session(record.session_id)
        now = self._clock.now()
        if record.state == ROTATED:
            again = await self._tokens.answer_again(record, now)
            if again is not None:
                # A retry within the grace window (the app lost the answer): the live pair
                # again, as for the person's own refresh tokens.
                exp = float(again.pop("_exp"))
                again["expires_in"] = max(0, int(exp - now.timestamp()))
                return again
            # The same rule as the person's own refresh tokens: reuse is theft, and the
            # session (with every app signed in through it) ends.
            raise await self._tokens.end_session_for_reuse(session, user, ctx, client_id=client.id)
        narrowed = grant.scopes
        if scope is not None:
            narrowed = parse_scope(scope)
            if not narrowed <= grant.scopes:
                raise InvalidScope("The scope exceeds what the grant allowed.")
        body, successor = await self._issue_parts(client, grant, session, user, scope=narrowed)
        sealed = None
        if self._tokens.reuse_grace > 0:
            sealed = self._tokens.seal_answer({k: v for k, v in body.items() if k != "_jti"})
        if not await self._refresh.rotate(record.id, successor, sealed, now):
            await self._tokens.revoke_jti(body["_jti"], datetime.fromtimestamp(body["_exp"], UTC))
            raise invalid_grant("The refresh token was already used.")
        body = await self._record(grant, body, None)
        self._sessions.touch(session.id)
        await self._auditor.record(
            AuditType.TOKEN_REFRESHED,
            ctx,
            user_id=user.id,
            session_id=session.id,
            client_id=client.id,
        )
        return body

    # -- issuing ----------------------------------------------------------------------------

    async def _issue(
        self, client: OAuthClient, grant: AppGrant, session: Session, user: User, *, first: bool
    ) -> dict[str, Any]:
        body, refresh = await self._issue_parts(client, grant, session, user)
        return await self._record(grant, body, refresh if first else None)

    async def _record(
        self, grant: AppGrant, body: dict[str, Any], refresh: RefreshToken | None
    ) -> dict[str, Any]:
        """Remember the access token on the grant (so revoking the grant reaches it) and
        store the first refresh token of the family; refused when the grant was revoked
        meanwhile (a concurrent reuse of its code)."""
        access_jti, access_exp = body.pop("_jti"), body.pop("_exp")
        if "refresh_token" not in body:
            refresh = None
        recorded = await self._grants.record_issued(
            grant.id, access_jti, access_exp, self._clock.now(), refresh
        )
        if not recorded:
            await self._tokens.revoke_jti(access_jti, datetime.fromtimestamp(access_exp, UTC))
            raise invalid_grant("The grant was revoked: the tokens issued from it are revoked.")
        return body

    async def _issue_parts(
        self,
        client: OAuthClient,
        grant: AppGrant,
        session: Session,
        user: User,
        *,
        scope: frozenset[str] | None = None,
    ) -> tuple[dict[str, Any], RefreshToken]:
        """The token response and the refresh token row it names (not yet stored)."""
        # What the app may hold: what the person allowed (narrowed on refresh, RFC 6749 6),
        # within what the person holds now.
        wanted = grant.scopes if scope is None else scope
        scopes = wanted & self._scopes.scopes_for_roles(user.roles)
        auth = await self._session_claims(session)
        remaining = int((session.expires_at - self._clock.now()).total_seconds())
        access = await self._tokens.issue_access_token(
            subject=user.id,
            scopes=scopes,
            session_id=session.id,
            client_id=client.id,
            ttl=max(1, min(self._tokens.ttl, remaining)),
            extra_claims=auth,
        )
        secret, secret_hash = new_refresh_secret(self._random)
        refresh = RefreshToken(
            id=self._random.new_id(),
            session_id=session.id,
            token_hash=secret_hash,
            created_at=self._clock.now(),
            state=ACTIVE,
            grant_id=grant.id,
        )
        body: dict[str, Any] = {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "scope": " ".join(sorted(scopes)),
            "_jti": access.jti,
            "_exp": access.expires_at.timestamp(),
        }
        if client.allows(GrantType.REFRESH_TOKEN):
            body["refresh_token"] = secret
        if "openid" in scopes:
            body["id_token"] = self.id_token(client, grant, session, user, access, auth)
        return body, refresh

    async def _session_claims(self, session: Session) -> dict[str, Any]:
        hook = self._tokens.session_claims
        return await hook(session) if hook is not None else {}

    def id_token(
        self,
        client: OAuthClient,
        grant: AppGrant,
        session: Session,
        user: User,
        access: IssuedToken,
        auth: dict[str, Any],
    ) -> str:
        """OpenID Connect Core 1.0 section 2, signed with the client's algorithm."""
        alg = client.id_token_signed_response_alg
        key = self.id_keys.signing_key() if alg == self.id_keys.algorithm else None
        if key is None and alg == self._tokens.keys.algorithm:
            key = self._tokens.keys.signing_key()
        if key is None:
            raise StoreUnavailable(f"No {alg} key signs ID tokens on this server.")
        now = int(self._clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": client.id,
            "azp": client.id,
            "iat": now,
            "exp": now + ID_TOKEN_TTL,
            "sid": session.id,
            "at_hash": create_half_hash(access.token, key.algorithm).decode(),
            **{k: auth[k] for k in ("auth_time", "amr", "acr") if k in auth},
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.identity_claims(user, grant.scopes))
        return jwt.encode(
            claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}
        )

    @staticmethod
    def identity_claims(user: User, scopes: frozenset[str]) -> dict[str, Any]:
        """OpenID Connect Core 5.4: the claims the ``profile`` and ``email`` scopes open."""
        claims: dict[str, Any] = {}
        if "email" in scopes:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified_at is not None
        if "profile" in scopes:
            names = [n for n in (user.first_name, user.last_name) if n]
            if names:
                claims["name"] = " ".join(names)
            if user.first_name:
                claims["given_name"] = user.first_name
            if user.last_name:
                claims["family_name"] = user.last_name
        return claims

    # -- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) -----------------------

    def read_id_token_hint(self, token: str) -> dict[str, Any] | None:
        """The claims of an ID token this server signed, expired or not (section 2 allows
        an expired hint); None when it is not one."""
        if len(token) > 8192:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        now = self._clock.now().timestamp()
        kid = str(header.get("kid", ""))
        key = self.id_keys.verifying_key(kid, now) or self._tokens.keys.verifying_key(kid, now)
        if key is None or header.get("alg") != key.algorithm or header.get("typ") != "JWT":
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public,
                algorithms=[key.algorithm],
                issuer=self.issuer,
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return None
        if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sid"), str):
            return None
        return claims

    # -- ending -----------------------------------------------------------------------------

    async def revoke_grant(
        self, grant_id: str, ctx: RequestContext, *, reason: str, actor_id: str | None = None
    ) -> None:
        """End one grant: its refresh tokens (marked) and its live access tokens (by jti, on
        every node). The person's session stays."""
        grant = await self._grants.revoke(grant_id, self._clock.now())
        if grant is None:
            return
        now = self._clock.now().timestamp()
        for jti, exp in grant.access_tokens:
            if exp > now:
                await self._tokens.revoke_jti(jti, datetime.fromtimestamp(exp, UTC))
        await self._auditor.record(
            AuditType.CREDENTIAL_REVOKED,
            ctx,
            user_id=grant.user_id,
            session_id=grant.session_id,
            actor_id=actor_id,
            kind="app_grant",
            credential_id=grant.id,
            client_id=grant.client_id,
            reason=reason,
        )
        log.info("app grant %s of client %s revoked (%s)", grant.id, grant.client_id, reason)

    async def revoke_refresh(
        self, record: RefreshToken, caller: OAuthClient | None, ctx: RequestContext
    ) -> bool:
        """RFC 7009 for an app's refresh token: its grant ends, never the person's session.
        False when ``caller`` is another client (its token is not the caller's to end)."""
        assert record.grant_id is not None
        grant = await self._grants.get(record.grant_id)
        if grant is None:
            return True
        if caller is not None and caller.id != grant.client_id:
            return False
        await self.revoke_grant(
            grant.id, ctx, reason="revoked", actor_id=caller.id if caller else None
        )
        return True

    async def connected_apps(
        self, user_id: str, lookup: Callable[[str], Awaitable[OAuthClient | None]]
    ) -> list[ConnectedApp]:
        """Apps the person consented to or holds live tokens of (``/account``), by name."""
        grants = await self._grants.for_user(user_id)
        consents = {c.client_id: c for c in await self._consents.for_user(user_id)}
        by_client: dict[str, list[AppGrant]] = {}
        for grant in grants:
            by_client.setdefault(grant.client_id, []).append(grant)
        apps = []
        for client_id in set(by_client) | set(consents):
            client = await lookup(client_id)
            if client is None:
                continue
            consent = consents.get(client_id)
            live = by_client.get(client_id, [])
            scopes = frozenset().union(*(g.scopes for g in live))
            apps.append(
                ConnectedApp(
                    client=client,
                    scopes=(consent.scopes if consent else frozenset()) | scopes,
                    consented_at=consent.created_at if consent else None,
                    live_grants=len(live),
                )
            )
        return sorted(apps, key=lambda app: (app.client.name.lower(), app.client.id))

    async def disconnect(self, user_id: str, client_id: str, ctx: RequestContext) -> bool:
        """Revoke the app's tokens and the person's consent; False when nothing was there."""
        grants = [g for g in await self._grants.for_user(user_id) if g.client_id == client_id]
        for grant in grants:
            await self.revoke_grant(grant.id, ctx, reason="disconnected", actor_id=user_id)
        removed = await self._consents.delete(user_id, client_id)
        return removed or bool(grants)

    async def end_with_expired_sessions(self, idle_margin: timedelta) -> int:
        """A session that simply runs out ends its apps' tokens too, and the apps with a
        back-channel logout URI are told (the rows are written with the revocation). Their
        access tokens already stop at the session's absolute expiry (``_issue_parts``); an
        idle expiry comes sooner, so those still live are revoked by jti here."""
        grants = await self._grants.end_with_expired_sessions(self._clock.now(), idle_margin)
        now = self._clock.now().timestamp()
        for grant in grants:
            for jti, exp in grant.access_tokens:
                if exp > now:
                    await self._tokens.revoke_jti(jti, datetime.fromtimestamp(exp, UTC))
            log.info(
                "app grant %s of client %s ended with its expired session %s",
                grant.id,
                grant.client_id,
                grant.session_id,
            )
        return len(grants)

    async def sweep(self) -> int:
        return await self._grants.clear_expired(self._clock.now() - timedelta(minutes=10))
