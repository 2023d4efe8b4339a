"""The authorization request of the code flow (RFC 6749 4.1.1, RFC 7636, OpenID Connect Core
1.0 section 3.1.2): who asks, where the answer goes, what for, and the code that answers it.

Two kinds of refusal, as RFC 6749 4.1.2.1 orders: while the client or its redirect URI is in
doubt the person sees an error page and is never redirected (``UntrustedRedirect``); after
that, errors go back to the app at its registered redirect URI (``AuthorizationError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN

from watchword.domain.app_grants import (
    CODE_TTL,
    MAX_NONCE,
    MAX_STATE,
    AppConsent,
    AppGrant,
    new_code,
)
from watchword.domain.audit import AuditType
from watchword.domain.clients import GrantType, OAuthClient, plausible_client_id
from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import InvalidInput
from watchword.domain.scopes import parse_scope
from watchword.services.audit import Auditor
from watchword.services.clients import ClientService
from watchword.services.context import RequestContext
from watchword.stores.app_grants import AppConsentStore, AppGrantStore

PROMPTS = frozenset({"none", "login", "consent"})
MAX_LOGIN_HINT = 320


class UntrustedRedirect(InvalidInput):
    """The client or the redirect URI is unknown or unregistered: show a page, never
    redirect (RFC 6749 4.1.2.1, RFC 9700 4.1)."""

    code = "invalid_request"


@dataclass(frozen=True, slots=True)
class AuthorizationError(Exception):
    """An RFC 6749 4.1.2.1 / OIDC Core 3.1.2.6 error sent back to the app's redirect URI."""

    error: str
    description: str
    redirect_uri: str
    state: str | None
    issuer: str

    def location(self) -> str:
        return add_query(
            self.redirect_uri,
            {
                "error": self.error,
                "error_description": self.description,
                "state": self.state,
                "iss": self.issuer,
            },
        )


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: OAuthClient
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None


def add_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` appended to its query (its own query kept, RFC 6749 3.1.2)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class Authorization:
    def __init__(
        self,
        *,
        clients: ClientService,
        grants: AppGrantStore,
        consents: AppConsentStore,
        auditor: Auditor,
        clock: Clock,
        randomness: Randomness,
        issuer: str,
    ) -> None:
        self._clients = clients
        self._grants = grants
        self._consents = consents
        self._auditor = auditor
        self._clock = clock
        self._random = randomness
        self.issuer = issuer

    async def check_request(self, params: Mapping[str, str]) -> AuthorizationRequest:
        """The request when it may proceed; ``UntrustedRedirect`` or ``AuthorizationError``
        otherwise."""
        client_id = params.get("client_id", "")
        client = await self._clients.get(client_id) if plausible_client_id(client_id) else None
        if client is None or client.disabled:
            raise UntrustedRedirect("This app is unknown or disabled.")
        if not client.allows(GrantType.AUTHORIZATION_CODE):
            raise UntrustedRedirect("This client does not sign people in.")
        redirect_uri = params.get("redirect_uri", "")
        # Exact string match (RFC 9700 4.1.3): no prefix, no extra path or query.
        if redirect_uri not in client.redirect_uris:
            raise UntrustedRedirect(
                "The redirect_uri is not one this app registered, so you are not sent there."
            )
        state = params.get("state") or None

        def refuse(error: str, description: str) -> AuthorizationError:
            return AuthorizationError(error, description, redirect_uri, state, self.issuer)

        if state is not None and len(state) > MAX_STATE:
            raise refuse("invalid_request", "The state is too long.")
        response_type = params.get("response_type")
        if response_type != "code":
            # No implicit or hybrid flow (RFC 9700 2.1.2).
            raise refuse("unsupported_response_type", "Only response_type=code is supported.")
        try:
            scopes = parse_scope(params.get("scope", ""))
        except InvalidInput:
            raise refuse("invalid_scope", "The scope is malformed.") from None
        if not scopes:
            raise refuse("invalid_scope", "Ask for at least one scope (openid to sign in).")
        excess = scopes - client.scopes
        if excess:
            raise refuse("invalid_scope", "Not registered for: " + " ".join(sorted(excess)) + ".")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        if challenge is None:
            if method is not None:
                raise refuse("invalid_request", "code_challenge_method without code_challenge.")
            if client.is_public:
                raise refuse("invalid_request", "A public client must use PKCE (S256).")
        else:
            # RFC 7636 4.3: no method means "plain", which this server never accepts.
            if method != "S256":
                raise refuse("invalid_request", "Only code_challenge_method=S256 is supported.")
            if not CODE_CHALLENGE_PATTERN.match(challenge):
                raise refuse("invalid_request", "The code_challenge is malformed.")
        nonce = params.get("nonce") or None
        if nonce is not None and len(nonce) > MAX_NONCE:
            raise refuse("invalid_request", "The nonce is too long.")
        prompt = frozenset(params.get("prompt", "").split())
        if prompt - PROMPTS:
            raise refuse("invalid_request", "prompt is none, login or consent.")
        if "none" in prompt and len(prompt) > 1:
            raise refuse("invalid_request", "prompt=none goes alone.")
        max_age: int | None = None
        if params.get("max_age"):
            try:
                max_age = int(params["max_age"])
            except ValueError:
                max_age = -1
            if max_age < 0:
                raise refuse("invalid_request", "max_age is a number of seconds.")
        login_hint = (params.get("login_hint") or "")[:MAX_LOGIN_HINT] or None
        return AuthorizationRequest(
            client=client,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            prompt=prompt,
            max_age=max_age,
            login_hint=login_hint,
        )

    def refuse(self, request: AuthorizationRequest, error: str, text: str) -> AuthorizationError:
        return AuthorizationError(error, text, request.redirect_uri, request.state, self.issuer)

    async def needs_consent(self, request: AuthorizationRequest, user_id: str) -> bool:
        if "consent" in request.prompt:
            return True
        if request.client.first_party:
            return False
        consent = await self._consents.get(user_id, request.client.id)
        return consent is None or not consent.covers(request.scopes)

    async def remember_consent(
        self, request: AuthorizationRequest, user_id: str, ctx: RequestContext
    ) -> None:
        existing = await self._consents.get(user_id, request.client.id)
        scopes = request.scopes | (existing.scopes if existing else frozenset())
        await self._consents.save(AppConsent(user_id, request.client.id, scopes, self._clock.now()))
        await self._auditor.record(
            AuditType.CREDENTIAL_CREATED,
            ctx,
            user_id=user_id,
            kind="app_consent",
            credential_id=request.client.id,
            scopes=sorted(scopes),
        )

    async def issue_code(
        self, request: AuthorizationRequest, *, user_id: str, session_id: str
    ) -> str:
        """The redirect that hands the app its code (with ``state`` and, RFC 9207, ``iss``)."""
        code, code_hash = new_code(self._random)
        now = self._clock.now()
        await self._grants.create(
            AppGrant(
                id=self._random.new_id(),
                code_hash=code_hash,
                client_id=request.client.id,
                user_id=user_id,
                session_id=session_id,
                redirect_uri=request.redirect_uri,
                scopes=request.scopes,
                nonce=request.nonce,
                code_challenge=request.code_challenge,
                created_at=now,
                code_expires_at=now + timedelta(seconds=CODE_TTL),
            )
        )
        return add_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer}
        )

    def auth_too_old(self, request: AuthorizationRequest, auth_time: datetime) -> bool:
        if request.max_age is None:
            return False
        return (self._clock.now() - auth_time).total_seconds() > request.max_age
