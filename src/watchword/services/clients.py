"""OAuth2 confidential clients: registration, client authentication (RFC 6749 section 2.3),
the client-credentials grant (section 4.4) and the opaque access tokens some clients get."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from watchword.domain import events
from watchword.domain.apikeys import CREDENTIAL_REVOKED, credential_revoked
from watchword.domain.audit import AuditType
from watchword.domain.clients import (
    DEFAULT_ID_TOKEN_ALG,
    ID_TOKEN_ALGORITHMS,
    MAX_NAME_LENGTH,
    SECRET_ONLY_GRANTS,
    ClientType,
    GrantType,
    OAuthClient,
    OpaqueToken,
    TokenFormat,
    client_changed,
    new_client_credentials,
    new_opaque_token,
    plausible_client_id,
    plausible_client_secret,
    plausible_opaque_token,
)
from watchword.domain.clock import Clock, Randomness, sha256_hex
from watchword.domain.errors import (
    InvalidCredential,
    InvalidInput,
    NotFound,
    RateLimited,
    StoreUnavailable,
)
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.redirect_uris import check_uri, check_uris
from watchword.domain.scopes import IDENTITY_SCOPES, parse_scope, require_subset
from watchword.services.audit import Auditor
from watchword.services.bounded_cache import BoundedCache
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.credential_guard import (
    ContextSource,
    CredentialThrottle,
    UsageLog,
)
from watchword.stores.machines import ClientStore, OpaqueTokenStore

log = logging.getLogger("watchword.clients")

FLUSH_INTERVAL = 5.0


class InvalidClient(InvalidCredential):
    """RFC 6749 section 5.2 ``invalid_client``: unknown client, wrong secret, or no or
    unsupported client authentication."""

    code = "invalid_client"
    default_message = "Client authentication failed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)


class UnauthorizedClientGrant(InvalidInput):
    """RFC 6749 5.2 ``unauthorized_client``: the client may not use this grant."""

    code = "unauthorized_client"
    default_message = "This client is not registered for the client_credentials grant."


class IssuedAccessToken(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_in(self) -> int: ...


class AccessTokenIssuer(Protocol):
    """What the tokens service offers for RFC 9068 access tokens."""

    async def issue_access_token(
        self,
        *,
        subject: str,
        scopes: frozenset[str],
        client_id: str | None = None,
        ttl: int | None = None,
    ) -> IssuedAccessToken: ...


@dataclass(frozen=True, slots=True)
class AppRegistration:
    """What an app registers beyond a client-credentials client (OpenID Connect Dynamic
    Client Registration 1.0 names the fields)."""

    client_type: ClientType = ClientType.CONFIDENTIAL
    grant_types: frozenset[GrantType] = frozenset({GrantType.CLIENT_CREDENTIALS})
    redirect_uris: tuple[str, ...] = ()
    first_party: bool = False
    backchannel_logout_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    id_token_signed_response_alg: str = DEFAULT_ID_TOKEN_ALG

    @property
    def signs_people_in(self) -> bool:
        return GrantType.AUTHORIZATION_CODE in self.grant_types

    @classmethod
    def parse(
        cls,
        *,
        client_type: str = "confidential",
        grant_types: str | Sequence[str] | None = None,
        redirect_uris: Sequence[str] = (),
        first_party: bool = False,
        backchannel_logout_uri: str | None = None,
        post_logout_redirect_uris: Sequence[str] = (),
        id_token_signed_response_alg: str | None = None,
    ) -> AppRegistration:
        try:
            kind = ClientType(client_type)
        except ValueError as exc:
            raise InvalidInput("The client type is 'public' or 'confidential'.") from exc
        if grant_types is None:
            names = ["authorization_code", "refresh_token"] if redirect_uris else []
            names = names or ["client_credentials"]
        elif isinstance(grant_types, str):
            names = [g for g in grant_types.replace(",", " ").split() if g]
        else:
            names = list(grant_types)
        grants: set[GrantType] = set()
        for name in names:
            try:
                grants.add(GrantType(name))
            except ValueError as exc:
                allowed = ", ".join(g.value for g in GrantType)
                raise InvalidInput(f"Unknown grant type {name!r} (one of {allowed}).") from exc
        return cls(
            client_type=kind,
            grant_types=frozenset(grants),
            redirect_uris=tuple(redirect_uris),
            first_party=first_party,
            backchannel_logout_uri=backchannel_logout_uri or None,
            post_logout_redirect_uris=tuple(post_logout_redirect_uris),
            id_token_signed_response_alg=id_token_signed_response_alg or DEFAULT_ID_TOKEN_ALG,
        )

    def checked(self) -> AppRegistration:
        """The registration when it is coherent, else ``InvalidInput`` naming the problem."""
        if not self.grant_types:
            raise InvalidInput("Give the client at least one grant type.")
        if self.client_type is ClientType.PUBLIC and self.grant_types & SECRET_ONLY_GRANTS:
            raise InvalidInput(
                "A public client has no secret, so it cannot use the client_credentials grant."
            )
        if GrantType.REFRESH_TOKEN in self.grant_types and not self.signs_people_in:
            raise InvalidInput("The refresh_token grant comes with authorization_code.")
        redirect_uris = check_uris(self.redirect_uris)
        if self.signs_people_in and not redirect_uris:
            raise InvalidInput("An app using authorization_code registers a redirect URI.")
        if not self.signs_people_in and (
            redirect_uris
            or self.first_party
            or self.backchannel_logout_uri
            or self.post_logout_redirect_uris
        ):
            raise InvalidInput(
                "Redirect and logout URIs and --first-party are for apps using authorization_code."
            )
        if self.id_token_signed_response_alg not in ID_TOKEN_ALGORITHMS:
            raise InvalidInput(
                "id_token_signed_response_alg is one of " + ", ".join(ID_TOKEN_ALGORITHMS) + "."
            )
        logout_uri = (
            check_uri(self.backchannel_logout_uri, "back-channel logout URI")
            if self.backchannel_logout_uri
            else None
        )
        return replace(
            self,
            redirect_uris=redirect_uris,
            backchannel_logout_uri=logout_uri,
            post_logout_redirect_uris=check_uris(
                self.post_logout_redirect_uris, "post-logout redirect URI"
            ),
        )


@dataclass(frozen=True, slots=True)
class NewClient:
    client: OAuthClient
    secret: str  # shown once


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: frozenset[str]

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": " ".join(sorted(self.scope)),
        }


@dataclass(frozen=True, slots=True)
class CachedOpaque:
    token: OpaqueToken
    client: OAuthClient
    principal: Principal


class ClientService:
    def __init__(
        self,
        *,
        clients: ClientStore,
        tokens: OpaqueTokenStore,
        clock: Clock,
        randomness: Randomness,
        control: ControlPlane,
        auditor: Auditor,
        throttle: CredentialThrottle,
        token_ttl: int,
        cache_size: int,
        cache_ttl: float,
    ) -> None:
        self._clients = clients
        self._tokens = tokens
        self._clock = clock
        self._random = randomness
        self._control = control
        self._auditor = auditor
        self._throttle = throttle
        self.token_ttl = token_ttl
        self.access_tokens: AccessTokenIssuer | None = None
        # What ID tokens can be signed with here (the container narrows it to its keys).
        self.id_token_algorithms: frozenset[str] = frozenset(ID_TOKEN_ALGORITHMS)
        self.cache: BoundedCache[CachedOpaque] = BoundedCache(max_size=cache_size, ttl=cache_ttl)
        self._tasks: list[asyncio.Task[None]] = []
        self._disabled: set[str] = set()
        # Opaque-token uses: one coalesced audit line per token and flush, not one per request.
        self.usage = UsageLog(interval=FLUSH_INTERVAL)
        control.on_event(self._on_control)

    # -- registration ---------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        scopes: str | list[str] | None = None,
        token_format: str = TokenFormat.JWT.value,
        ctx: RequestContext,
        actor_id: str | None = None,
        app: AppRegistration | None = None,
    ) -> NewClient:
        """A client-credentials client, or with ``app`` one that signs people in (the
        authorization-code grant). A public client gets no secret (``NewClient.secret`` is
        empty)."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidInput(f"The name must be 1 to {MAX_NAME_LENGTH} printable characters.")
        if scopes is None and app is not None:
            scopes = sorted(IDENTITY_SCOPES)
        granted = parse_scope(scopes or "")
        if not granted:
            raise InvalidInput("Give the client at least one scope.")
        try:
            fmt = TokenFormat(token_format)
        except ValueError as exc:
            raise InvalidInput("token_format must be 'jwt' or 'opaque'.") from exc
        registration = (app or AppRegistration()).checked()
        if registration.id_token_signed_response_alg not in self.id_token_algorithms:
            raise InvalidInput(
                "This server signs ID tokens with "
                + " or ".join(sorted(self.id_token_algorithms))
                + " (RS256, or the access-token algorithm WATCHWORD_JWT_ALGORITHM)."
            )
        if registration.signs_people_in and fmt is not TokenFormat.JWT:
            raise InvalidInput("Apps that sign people in get JWT access tokens (RFC 9068).")
        client_id, secret, secret_hash = new_client_credentials(self._random)
        if registration.client_type is ClientType.PUBLIC:
            secret, secret_hash = "", ""
        client = OAuthClient(
            id=client_id,
            name=name,
            secret_hash=secret_hash,
            scopes=granted,
            token_format=fmt,
            created_at=self._clock.now(),
            client_type=registration.client_type,
            grant_types=registration.grant_types,
            redirect_uris=registration.redirect_uris,
            first_party=registration.first_party,
            backchannel_logout_uri=registration.backchannel_logout_uri,
            post_logout_redirect_uris=registration.post_logout_redirect_uris,
            id_token_signed_response_alg=registration.id_token_signed_response_alg,
        )
        await self._clients.create(client)
        await self._auditor.record(
            AuditType.CREDENTIAL_CREATED,
            ctx,
            actor_id=actor_id,
            kind="client",
            credential_id=client.id,
            scopes=sorted(granted),
            token_format=fmt.value,
            client_type=client.client_type.value,
            grant_types=sorted(g.value for g in client.grant_types),
        )
        return NewClient(client=client, secret=secret)

    async def list_clients(self, *, limit: int = 100, offset: int = 0) -> list[OAuthClient]:
        return await self._clients.page(limit=limit, offset=offset)

    async def set_disabled(
        self, client_id: str, disabled: bool, ctx: RequestContext, *, actor_id: str | None = None
    ) -> OAuthClient:
        client = await self._clients.set_disabled(
            client_id, disabled, self._clock.now(), origin=self._control.node_id
        )
        if client is None:
            raise NotFound("No such client.")
        self.cache.drop_where(lambda entry: entry.client.id == client_id)
        self._note_disabled(client_id, disabled)
        await self._control.announce([client_changed(client_id, disabled=disabled)])
        await self._auditor.record(
            AuditType.CREDENTIAL_REVOKED if disabled else AuditType.CREDENTIAL_CREATED,
            ctx,
            actor_id=actor_id,
            kind="client",
            credential_id=client_id,
            disabled=disabled,
        )
        return client

    async def get(self, client_id: str) -> OAuthClient | None:
        return await self._clients.get(client_id)

    async def rotate_secret(
        self, client_id: str, ctx: RequestContext, *, actor_id: str | None = None
    ) -> NewClient:
        """A new secret, shown once; the old one stops working at once on every node (the
        secret is checked against the store at each token request)."""
        existing = await self._clients.get(client_id)
        if existing is not None and existing.is_public:
            raise InvalidInput("A public client has no secret to rotate.")
        _, secret, secret_hash = new_client_credentials(self._random)
        client = await self._clients.set_secret(client_id, secret_hash)
        if client is None:
            raise NotFound("No such client.")
        await self._auditor.record(
            AuditType.CREDENTIAL_UPDATED,
            ctx,
            actor_id=actor_id,
            kind="client",
            credential_id=client_id,
            change="secret_rotated",
        )
        return NewClient(client=client, secret=secret)

    # -- client authentication (RFC 6749 section 2.3.1) -----------------------------------

    async def authenticate_client(
        self, client_id: str, secret: str, ctx: RequestContext
    ) -> OAuthClient:
        if not plausible_client_id(client_id):
            await self._reject_client(ctx, "malformed", None)
        await self._throttle.check_address(
            ctx.ip,
            lambda: self._auditor.record(
                AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="client", reason="address"
            ),
        )
        await self._throttle.check_credential(
            "client",
            client_id,
            lambda: self._auditor.record(
                AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="client", reason="credential"
            ),
        )
        client = await self._clients.get(client_id)
        # Compare even for an unknown client, so timing does not tell which ids exist.
        known = client is not None
        reference = client or _UNKNOWN_CLIENT
        secret_ok = plausible_client_secret(secret) and reference.secret_matches(secret)
        if not known:
            await self._reject_client(ctx, "unknown", client_id)
        assert client is not None
        if not secret_ok:
            await self._reject_client(ctx, "wrong_secret", client_id)
        if client.disabled:
            await self._reject_client(ctx, "disabled", client_id, count=False)
        return client

    async def public_client(self, client_id: str, ctx: RequestContext) -> OAuthClient:
        """RFC 6749 2.3 for a public client: it names itself (``client_id``) and proves
        nothing here; PKCE is its proof. A confidential client must authenticate."""
        client = await self._clients.get(client_id) if plausible_client_id(client_id) else None
        if client is None:
            await self._reject_client(ctx, "unknown", None)
        assert client is not None
        if not client.is_public:
            await self._reject_client(ctx, "secret_missing", client_id, count=False)
        if client.disabled:
            await self._reject_client(ctx, "disabled", client_id, count=False)
        return client

    async def _reject_client(
        self, ctx: RequestContext, reason: str, client_id: str | None, *, count: bool = True
    ) -> None:
        await self._auditor.record(
            AuditType.CREDENTIAL_REJECTED,
            ctx,
            kind="client",
            reason=reason,
            credential_id=client_id,
        )
        if count:
            try:
                await self._throttle.failed(kind="client", credential=client_id, ip=ctx.ip)
            except RateLimited:
                await self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="client", reason=reason
                )
                raise
        raise InvalidClient()

    # -- the client-credentials grant (RFC 6749 section 4.4) ------------------------------

    async def issue_token(
        self, client: OAuthClient, scope: str | None, ctx: RequestContext
    ) -> TokenResponse:
        """Scope narrowing (section 3.3): no ``scope`` means all the client's scopes."""
        if not client.allows(GrantType.CLIENT_CREDENTIALS):
            raise UnauthorizedClientGrant()
        requested = parse_scope(scope) if scope is not None else client.scopes
        if not requested:
            requested = client.scopes
        require_subset(requested, client.scopes)
        if client.token_format is TokenFormat.OPAQUE:
            response = await self._issue_opaque(client, requested)
        else:
            if self.access_tokens is None:
                raise StoreUnavailable("JWT access tokens are not available on this server.")
            # RFC 9068 for a client: sub = client_id, no sid, no roles.
            issued = await self.access_tokens.issue_access_token(
                subject=client.id, scopes=requested, client_id=client.id, ttl=self.token_ttl
            )
            response = TokenResponse(issued.token, issued.expires_in, requested)
        await self._auditor.record(
            AuditType.CREDENTIAL_USED,
            ctx,
            kind="client",
            credential_id=client.id,
            grant="client_credentials",
            scopes=sorted(requested),
            token_format=client.token_format.value,
        )
        return response

    async def _issue_opaque(self, client: OAuthClient, scopes: frozenset[str]) -> TokenResponse:
        token, token_hash = new_opaque_token(self._random)
        now = self._clock.now()
        await self._tokens.create(
            OpaqueToken(
                id=self._random.new_id(),
                token_hash=token_hash,
                client_id=client.id,
                scopes=scopes,
                created_at=now,
                expires_at=now + timedelta(seconds=self.token_ttl),
            )
        )
        return TokenResponse(token, self.token_ttl, scopes)

    # -- opaque access tokens ---------------------------------------------------------------

    async def authenticate_opaque(self, token: str, ctx: ContextSource) -> Principal:
        if not plausible_opaque_token(token):
            await self._reject_token(ctx(), "malformed")
        token_hash = sha256_hex(token)
        entry = self.cache.get(token_hash)
        if entry is None:
            await self._throttle.check_address(
                ctx().ip,
                lambda: self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx(), kind="opaque_token", reason="address"
                ),
            )
            entry = await self._load_opaque(token_hash)
            if entry is None:
                await self._reject_token(ctx(), "unknown")
        assert entry is not None
        now = self._clock.now()
        if entry.token.revoked_at is not None:
            await self._reject_token(ctx(), "revoked", count=False)
        if now >= entry.token.expires_at:
            await self._reject_token(ctx(), "expired", count=False)
        if entry.client.disabled:
            await self._reject_token(ctx(), "client_disabled", count=False)
        self.usage.note(entry.token.id, now, entry.client.id)
        return entry.principal

    async def find_opaque(self, token: str) -> tuple[OpaqueToken, OAuthClient] | None:
        """For introspection and revocation: no side effects."""
        if not plausible_opaque_token(token):
            return None
        row = await self._tokens.get_by_hash(sha256_hex(token))
        if row is None:
            return None
        client = await self._clients.get(row.client_id)
        return (row, client) if client is not None else None

    async def revoke_opaque(
        self, row: OpaqueToken, ctx: RequestContext, actor_id: str | None
    ) -> None:
        revoked = await self._tokens.revoke(row.id, self._clock.now(), origin=self._control.node_id)
        self.cache.pop(row.token_hash)
        if revoked is not None:
            await self._control.announce([credential_revoked("opaque_token", row.token_hash, None)])
            await self._auditor.record(
                AuditType.CREDENTIAL_REVOKED,
                ctx,
                actor_id=actor_id,
                kind="opaque_token",
                credential_id=row.id,
                client_id=row.client_id,
            )

    def principal_for(self, token: OpaqueToken, client: OAuthClient) -> Principal:
        return Principal(
            kind="client",
            method=AuthMethod.BEARER_OPAQUE,
            client_id=client.id,
            scopes=token.scopes & client.scopes,
            expires_at=token.expires_at,
            credential_id=token.id,
        )

    async def _load_opaque(self, token_hash: str) -> CachedOpaque | None:
        row = await self._tokens.get_by_hash(token_hash)
        if row is None:
            return None
        client = await self._clients.get(row.client_id)
        if client is None:
            return None
        entry = CachedOpaque(token=row, client=client, principal=self.principal_for(row, client))
        self.cache.put(token_hash, entry)
        return entry

    async def _reject_token(self, ctx: RequestContext, reason: str, *, count: bool = True) -> None:
        await self._auditor.record(
            AuditType.CREDENTIAL_REJECTED, ctx, kind="opaque_token", reason=reason
        )
        if count:
            try:
                await self._throttle.failed(kind="opaque_token", credential=None, ip=ctx.ip)
            except RateLimited:
                await self._auditor.record(
                    AuditType.CREDENTIAL_RATE_LIMITED, ctx, kind="opaque_token", reason=reason
                )
                raise
        messages = {
            "revoked": "The access token has been revoked.",
            "expired": "The access token has expired.",
        }
        raise InvalidCredential(
            messages.get(reason, "The access token is not valid."), code="invalid_token"
        )

    async def sweep(self) -> int:
        """Delete opaque tokens a day past their expiry (revoked ones stay until then, so a
        revoked hash is never mistaken for an unknown one while it could still be presented)."""
        return await self._tokens.clear_expired(self._clock.now() - timedelta(days=1))

    async def flush_usage(self) -> None:
        """One ``credential.used`` audit line per opaque token used since the last flush."""
        _, uses = self.usage.take()
        try:
            for token_id, count in uses.items():
                await self._auditor.record(
                    AuditType.CREDENTIAL_USED,
                    RequestContext(),
                    kind="opaque_token",
                    credential_id=token_id,
                    client_id=self.usage.owners.get(token_id),
                    uses=count,
                )
        except StoreUnavailable:
            self.usage.give_back({}, uses)
            raise

    # -- disabled clients (their JWTs are refused by the tokens service) -------------------

    def is_enabled(self, client_id: str) -> bool:
        return client_id not in self._disabled

    def _note_disabled(self, client_id: str, disabled: bool) -> None:
        if disabled:
            self._disabled.add(client_id)
        else:
            self._disabled.discard(client_id)

    async def load_disabled(self) -> None:
        disabled: set[str] = set()
        offset = 0
        while True:
            page = await self._clients.page(limit=500, offset=offset)
            disabled.update(client.id for client in page if client.disabled)
            if len(page) < 500:
                break
            offset += 500
        self._disabled = disabled

    async def start(self, *, sweep_interval: float) -> None:
        try:
            await self.load_disabled()
        except StoreUnavailable:
            log.warning("disabled clients unknown at start: store unavailable")
        self._tasks = [
            asyncio.create_task(self._every(sweep_interval, self.sweep)),
            asyncio.create_task(self._every(FLUSH_INTERVAL, self.flush_usage)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(StoreUnavailable):
            await self.flush_usage()

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except StoreUnavailable:
                log.warning("opaque token upkeep: store unavailable")
            except Exception:
                log.exception("opaque token upkeep failed")

    async def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == CREDENTIAL_REVOKED:
            if message.get("kind") == "opaque_token":
                self.cache.pop(str(message.get("credential_id")))
            elif message.get("kind") == "client":
                client_id = str(message.get("credential_id"))
                self.cache.drop_where(lambda entry: entry.client.id == client_id)
                self._note_disabled(client_id, bool(message.get("disabled", True)))
        elif kind == events.CACHE_FLUSH:
            self.cache.clear()


# Compared against when the client id is unknown, so both paths do the same work.
_UNKNOWN_CLIENT = OAuthClient(
    id="wwc_unknown",
    name="unknown",
    secret_hash=sha256_hex("unknown client"),
    scopes=frozenset(),
    token_format=TokenFormat.OPAQUE,
    created_at=datetime(2000, 1, 1, tzinfo=UTC),
)
