"""Tokens as a service: issue access tokens, rotate refresh tokens, verify bearers, revoke.

The API other parts rely on (``container.tokens``):

- ``await issue_access_token(subject=..., scopes=..., roles=..., session_id=..., client_id=...,
  ttl=..., extra_claims=...) -> IssuedToken``: a signed RFC 9068 access token.
- ``await authenticate_bearer(token) -> Principal``: verify an access token and return who it
  speaks for; raises ``InvalidCredential(code="invalid_token")`` with a precise message when it
  is forged, expired, revoked, or its user is disabled or changed roles. It is ``async``: a
  token of a key this node has not loaded yet triggers one rate-limited key reload, and the
  first token of a user loads that user once. The WebSocket gateway calls it for handshakes
  and in-socket refresh.
- ``await revoke_jti(jti, expires_at)``: revoke one access token on every node.
- ``is_revoked(sid, jti) -> bool``: the in-memory check (revoked session or token id).

Verification never waits on a store per request: verified tokens are cached (bounded, until
their expiry) and users are cached briefly, but the revoked-session and revoked-token checks
run on every call, against sets that control events keep current.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from watchword.domain import events
from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, Randomness, sha256_digest, sha256_hex
from watchword.domain.errors import InvalidCredential, InvalidInput, NotFound, StoreUnavailable
from watchword.domain.keys import ALGORITHMS
from watchword.domain.masterkey import MasterKey
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.scopes import IMPLICIT_ROLE, ScopePolicy
from watchword.domain.sessions import RevokeReason, Session
from watchword.domain.tokens import (
    ACTIVE,
    ROTATED,
    TOKEN_TYPE,
    AccessClaims,
    RefreshToken,
    build_claims,
    check_header,
    check_times,
    duplicate_member,
    invalid_grant,
    invalid_token,
    new_refresh_secret,
    parse_claims,
    plausible_refresh,
    token_revoked,
)
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.bounded_cache import BoundedCache
from watchword.services.context import RequestContext
from watchword.services.control import ControlPlane
from watchword.services.keys import KeyService
from watchword.services.revocations import RevocationFeed, RevokedTokens
from watchword.services.sessions import SessionService
from watchword.services.single_flight import SingleFlight
from watchword.stores.base import Database
from watchword.stores.tokens import TokenStores

log = logging.getLogger("watchword.tokens")

ACCEPTED_ALGORITHMS = frozenset(ALGORITHMS)
MAX_JTI_LENGTH = 128
UPKEEP_INTERVAL = 30.0
BOOTSTRAP_RETRY = 1.0
USER_CACHE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str
    session_id: str
    scope: str

    def body(self, user: User) -> dict[str, Any]:
        return {
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "session_id": self.session_id,
            "user": user.public(),
        }


@dataclass(slots=True)
class _UserState:
    user: User
    roles: frozenset[str]
    scopes: frozenset[str]


@dataclass(slots=True)
class _Verified:
    claims: AccessClaims
    expires_at: datetime
    principal: Principal | None = None
    state: _UserState | None = None
    touched_at: float = float("-inf")


def _digest(token: str | bytes) -> bytes:
    """What the verified-token cache is keyed by: it never holds a usable bearer token."""
    if isinstance(token, str):
        token = token.encode("utf-8", "surrogatepass")
    return sha256_digest(token)


class TokenService:
    def __init__(
        self,
        *,
        db: Database,
        stores: TokenStores,
        keys: KeyService,
        sessions: SessionService,
        control: ControlPlane,
        auditor: Auditor,
        scope_policy: ScopePolicy,
        master_key: MasterKey,
        clock: Clock,
        randomness: Randomness,
        issuer: str,
        audience: str,
        ttl: int,
        max_ttl: int,
        leeway: int,
        max_token_bytes: int,
        reuse_grace: int,
        cache_size: int,
        user_cache_ttl: float,
        touch_interval: float,
        poll_interval: float,
        first_party_client_id: str = "watchword",
    ) -> None:
        self._db = db
        self.first_party_client_id = first_party_client_id
        self._stores = stores
        self.keys = keys
        self._sessions = sessions
        self._control = control
        self._auditor = auditor
        self._scopes = scope_policy
        self._master_key = master_key
        self._clock = clock
        self._random = randomness
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.max_ttl = max(ttl, max_ttl)
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.reuse_grace = reuse_grace
        self._cache_size = cache_size
        self._touch_interval = touch_interval
        self.jtis = RevokedTokens()
        self.revocations = RevocationFeed(
            feed=db.control,
            store=stores.revocations,
            control=control,
            jtis=self.jtis,
            clock=clock,
            session_retention=ttl + leeway,
            poll_interval=poll_interval,
        )
        self._verified: dict[bytes, _Verified] = {}
        # Session ids seen to exist (an insertion-ordered dict as a bounded set).
        self._issued_sids: dict[str, None] = {}
        # machines: False for a disabled OAuth2 client, whose JWTs stop at once.
        self.client_enabled: Callable[[str], bool] | None = None
        # How the session's user signed in (amr, auth_time, acr), in every access token.
        self.session_claims: Callable[[Session], Awaitable[dict[str, Any]]] | None = None
        # A bearer token's account, by user id; its generation moves when an account changes
        # (or the cache is flushed): a read begun before that must not put back what the
        # change removed.
        self._users: BoundedCache[_UserState] = BoundedCache(
            max_size=USER_CACHE_SIZE, ttl=user_cache_ttl
        )
        self._user_loads: SingleFlight[_UserState] = SingleFlight()
        self._task: asyncio.Task[None] | None = None
        self.ready = False
        control.on_event(self._on_control)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the revocations made before this node started, then follow new ones. With
        the store down the node starts anyway but refuses bearer tokens (503) until it has
        learnt them: a revocation it never heard of must not let a token through."""
        try:
            await self._load_revocations()
        except StoreUnavailable:
            log.warning("revocations unreachable at start; bearer tokens wait for them")
        self._task = asyncio.create_task(self._upkeep_forever(), name="watchword-tokens")

    async def _load_revocations(self) -> None:
        cursor = await self._db.control.last_id()
        now = self._clock.now()
        for jti, expires_at in (await self._stores.revocations.revoked_jtis(now)).items():
            self.jtis.add(jti, expires_at.timestamp())
        since = now - timedelta(seconds=self.ttl + self.leeway)
        for sid, revoked_at, expires_at in await self._stores.revocations.sessions_revoked_since(
            since
        ):
            self._control.revoked.add(sid, revoked_at.timestamp(), expires_at.timestamp())
        await self.revocations.start(cursor)
        self.ready = True

    async def stop(self) -> None:
        await self.revocations.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def upkeep(self) -> None:
        now = self._clock.now()
        await self._stores.refresh.forget_successors(now - timedelta(seconds=self.reuse_grace))
        await self._stores.revocations.clear_expired(now)
        self.jtis.prune(now.timestamp())
        cutoff = now.timestamp() - self.leeway
        for digest in [d for d, e in self._verified.items() if e.claims.expires_at < cutoff]:
            del self._verified[digest]

    async def _upkeep_forever(self) -> None:
        while not self.ready:
            await asyncio.sleep(BOOTSTRAP_RETRY)
            try:
                await self._load_revocations()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("loading the revocations failed")
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL)
            try:
                await self.upkeep()
            except StoreUnavailable:
                log.warning("token upkeep: store unavailable")
            except Exception:
                log.exception("token upkeep failed")

    async def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == events.TOKEN_REVOKED:
            self.jtis.add(str(message.get("jti")), float(message.get("expires_at") or 0))
        elif kind == events.USER_CHANGED:
            self._users.pop(str(message.get("user_id")))
        elif kind == events.CACHE_FLUSH:
            self._users.clear()
            self._verified.clear()

    # -- issuing --------------------------------------------------------------------------

    async def issue_access_token(
        self,
        *,
        subject: str,
        scopes: frozenset[str],
        roles: frozenset[str] = frozenset(),
        session_id: str | None = None,
        client_id: str | None = None,
        ttl: int | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> IssuedToken:
        """A signed access token. Tokens of a session live at most the configured access
        token lifetime (revocation by session relies on it); others at most the maximum."""
        lifetime = self.ttl if ttl is None else int(ttl)
        limit = self.ttl if session_id is not None else self.max_ttl
        if session_id is not None and client_id is None:
            # RFC 9068 section 2.2: every access token names a client; a user's token names
            # the first-party client that signed the user in.
            client_id = self.first_party_client_id
        if not 0 < lifetime <= limit:
            raise InvalidInput(f"An access token lives 1 to {limit} seconds.")
        key = self.keys.signing_key()
        issued_at = int(self._clock.now().timestamp())
        jti = self._random.new_id()
        claims = build_claims(
            issuer=self.issuer,
            audience=self.audience,
            subject=subject,
            jti=jti,
            issued_at=issued_at,
            ttl=lifetime,
            scopes=frozenset(scopes),
            roles=frozenset(roles) if roles else None,
            session_id=session_id,
            client_id=client_id,
            extra=extra_claims,
        )
        token = jwt.encode(
            claims,
            key.private,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": TOKEN_TYPE},
        )
        return IssuedToken(
            token=token,
            jti=jti,
            expires_at=datetime.fromtimestamp(issued_at + lifetime, UTC),
            expires_in=lifetime,
        )

    async def _session_token(self, session: Session, user: User) -> tuple[IssuedToken, str]:
        extra = await self.session_claims(session) if self.session_claims is not None else None
        now = self._clock.now()
        remaining = int((session.expires_at - now).total_seconds())
        scopes = self._scopes.scopes_for_roles(user.roles)
        token = await self.issue_access_token(
            subject=user.id,
            scopes=scopes,
            roles=frozenset(user.roles) | {IMPLICIT_ROLE},
            session_id=session.id,
            ttl=max(1, min(self.ttl, remaining)),
            extra_claims=extra,
        )
        return token, " ".join(sorted(scopes))

    async def start_session(self, session: Session, user: User) -> TokenPair:
        """The first pair of a token session (``POST /v1/auth/login`` with mode "token")."""
        access, scope = await self._session_token(session, user)
        secret, secret_hash = new_refresh_secret(self._random)
        await self._stores.refresh.create(
            RefreshToken(
                id=self._random.new_id(),
                session_id=session.id,
                token_hash=secret_hash,
                created_at=self._clock.now(),
            )
        )
        return TokenPair(access=access, refresh_token=secret, session_id=session.id, scope=scope)

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self, refresh_token: str, ctx: RequestContext) -> tuple[TokenPair, User]:
        """Rotate: a new pair for an active refresh token. A retired one presented again is
        theft (the session is revoked) unless it is the immediate predecessor of the live
        token and comes within the grace window: that one gets the live pair again (a client
        that lost the answer to its refresh). Older tokens of the family are reuse."""
        if not plausible_refresh(refresh_token):
            raise invalid_grant("The refresh token is malformed.")
        token_hash = sha256_hex(refresh_token)
        for _ in range(2):
            record = await self._stores.refresh.get_by_hash(token_hash)
            if record is None or record.grant_id is not None:
                # An app's refresh token is redeemed at /oauth2/token by that app only.
                raise invalid_grant("The refresh token is not valid.")
            session, user = await self.live_session(record.session_id)
            now = self._clock.now()
            if record.state == ROTATED:
                return await self._repeat(record, session, user, ctx, now), user
            access, scope = await self._session_token(session, user)
            secret, secret_hash = new_refresh_secret(self._random)
            pair = TokenPair(access, secret, session.id, scope)
            successor = RefreshToken(
                id=self._random.new_id(),
                session_id=session.id,
                token_hash=secret_hash,
                created_at=now,
            )
            sealed = self._seal_pair(pair) if self.reuse_grace > 0 else None
            if await self._stores.refresh.rotate(record.id, successor, sealed, now):
                self._sessions.touch(session.id)
                await self._auditor.record(
                    AuditType.TOKEN_REFRESHED, ctx, user_id=user.id, session_id=session.id
                )
                return pair, user
            # Another request rotated this token first: answer as a repeat of it.
        raise invalid_grant("The refresh token is not valid.")

    async def live_session(self, session_id: str) -> tuple[Session, User]:
        """The session and its user when the session may still issue tokens, else
        ``invalid_grant`` saying why (also for apps' tokens, which ride on the session)."""
        session = await self._db.sessions.get(session_id)
        if session is None:
            raise invalid_grant("The session of this refresh token no longer exists.")
        if session.revoked_at is not None or session.id in self._control.revoked:
            raise invalid_grant("The session of this refresh token has been revoked.")
        if not session.is_live(self._clock.now(), self._sessions.last_seen(session)):
            raise invalid_grant("The session has expired: sign in again.")
        user = await self._db.users.get(session.user_id)
        if user is None:
            raise invalid_grant("The account of this session no longer exists.")
        if user.disabled:
            raise invalid_grant("The account is disabled.")
        return session, user

    def _seal_pair(self, pair: TokenPair) -> str:
        data = {
            "access_token": pair.access.token,
            "jti": pair.access.jti,
            "exp": pair.access.expires_at.timestamp(),
            "refresh_token": pair.refresh_token,
            "scope": pair.scope,
        }
        return self.seal_answer(data)

    def seal_answer(self, data: dict[str, Any]) -> str:
        """A rotation's answer (it names the new ``refresh_token``), sealed with the master
        key, kept on the retired token for the grace window."""
        return self._master_key.seal(json.dumps(data).encode())

    async def answer_again(self, record: RefreshToken, now: datetime) -> dict[str, Any] | None:
        """The sealed answer of ``record``'s rotation when it comes again within the grace
        window and its successor is still the family's live token; None means reuse. Also
        for apps' refresh tokens (``services/app_tokens.py``): the same rule for both."""
        if (
            self.reuse_grace <= 0
            or record.rotated_at is None
            or now - record.rotated_at > timedelta(seconds=self.reuse_grace)
            or record.successor_sealed is None
        ):
            return None
        data: dict[str, Any] = json.loads(self._master_key.unseal(record.successor_sealed))
        # Only the immediate predecessor of the live token gets the live pair again: a
        # token whose successor was itself rotated would walk the family back in time.
        successor = await self._stores.refresh.get_by_hash(sha256_hex(data["refresh_token"]))
        if successor is None or successor.state != ACTIVE:
            return None
        return data

    async def _repeat(
        self,
        record: RefreshToken,
        session: Session,
        user: User,
        ctx: RequestContext,
        now: datetime,
    ) -> TokenPair:
        data = await self.answer_again(record, now)
        if data is not None:
            exp = float(data["exp"])
            access = IssuedToken(
                token=data["access_token"],
                jti=data["jti"],
                expires_at=datetime.fromtimestamp(exp, UTC),
                expires_in=max(0, int(exp - now.timestamp())),
            )
            return TokenPair(access, data["refresh_token"], session.id, data["scope"])
        raise await self.end_session_for_reuse(
            session,
            user,
            ctx,
            rotated_at=record.rotated_at.isoformat() if record.rotated_at else None,
        )

    async def end_session_for_reuse(
        self, session: Session, user: User, ctx: RequestContext, **details: Any
    ) -> InvalidCredential:
        """Reuse of a rotated refresh token is theft: the session ends (with every app signed
        in through it) and the audit trail says so; returns the ``invalid_grant`` to raise.
        Also for apps' refresh tokens (``services/app_tokens.py``): the same rule for both."""
        with contextlib.suppress(NotFound):  # a concurrent reuse revoked it already
            await self._sessions.revoke(session.id, RevokeReason.REFRESH_REUSE, ctx)
        await self._auditor.record(
            AuditType.REFRESH_REUSE, ctx, user_id=user.id, session_id=session.id, **details
        )
        log.warning("refresh token reuse on session %s: session revoked", session.id)
        return invalid_grant("This refresh token was already used: the session has been revoked.")

    # -- verifying ------------------------------------------------------------------------

    def authenticate_bearer_cached(self, token: str | bytes) -> Principal | None:
        """``authenticate_bearer`` from memory alone: the principal of a token verified before
        whose account is cached, or the same refusal; None when the token must be verified or
        its account read (then ``authenticate_bearer``). Not a coroutine: the hot path."""
        digest = _digest(token)
        entry = self._verified.get(digest)
        if entry is None:
            return None
        self._check_ready()
        return self._admit(digest, entry, self._clock.timestamp())

    def _check_ready(self) -> None:
        if not self.ready:
            raise StoreUnavailable("Revocations are not loaded yet; try again shortly.")

    async def authenticate_bearer(self, token: str) -> Principal:
        self._check_ready()
        now = self._clock.timestamp()
        digest = _digest(token)
        entry = self._verified.get(digest)
        if entry is None:
            claims = await self._verify(token, now)
            entry = _Verified(claims, datetime.fromtimestamp(claims.expires_at, UTC))
            self._remember(digest, entry)
        principal = self._admit(digest, entry, now)
        if principal is None:  # the account is not in memory
            state = await self._read_user_state(entry.claims.subject)
            principal = self._admit_user(entry, state, now)
        return principal

    def _admit(self, digest: bytes, entry: _Verified, now: float) -> Principal | None:
        """Every check of a verified token, from memory; None: its account must be read."""
        claims = entry.claims
        if now >= claims.expires_at + self.leeway:
            self._verified.pop(digest, None)
            raise invalid_token("The access token has expired.")
        if claims.session_id is not None and claims.session_id in self._control.revoked:
            raise invalid_token("The session of this access token has been revoked.")
        if claims.jti in self.jtis:
            raise invalid_token("The access token has been revoked.")
        if claims.is_client:
            assert claims.client_id is not None
            if self.client_enabled is not None and not self.client_enabled(claims.client_id):
                raise invalid_token("The client of this access token is disabled.")
            if entry.principal is None:
                entry.principal = Principal(
                    kind="client",
                    method=AuthMethod.BEARER_JWT,
                    client_id=claims.client_id,
                    scopes=claims.scopes,
                    roles=claims.roles or frozenset(),
                    expires_at=entry.expires_at,
                    credential_id=claims.jti,
                )
            return entry.principal
        if (
            claims.client_id is not None
            and claims.client_id != self.first_party_client_id
            and self.client_enabled is not None
            and not self.client_enabled(claims.client_id)
        ):
            # An app's token for a person (OpenID Connect) stops with its app, too.
            raise invalid_token("The client of this access token is disabled.")
        state = self._cached_user_state(claims.subject)
        if state is None:
            return None
        return self._admit_user(entry, state, now)

    def _admit_user(self, entry: _Verified, state: _UserState, now: float) -> Principal:
        claims = entry.claims
        if state is not entry.state:
            self._check_user(claims, state)
            entry.state = state
            entry.principal = Principal(
                kind="user",
                method=AuthMethod.BEARER_JWT,
                user_id=claims.subject,
                # The first-party client (RFC 9068 asks every token to name one) is Watchword
                # itself: such a token is the person's own, not a delegation to an app.
                client_id=(
                    None if claims.client_id == self.first_party_client_id else claims.client_id
                ),
                session_id=claims.session_id,
                scopes=claims.scopes,
                roles=claims.roles if claims.roles is not None else state.roles,
                expires_at=entry.expires_at,
                credential_id=claims.jti,
                user=state.user,
            )
        if claims.session_id is not None and now - entry.touched_at >= self._touch_interval:
            entry.touched_at = now
            self._sessions.touch(claims.session_id)
        assert entry.principal is not None
        return entry.principal

    @staticmethod
    def _check_user(claims: AccessClaims, state: _UserState) -> None:
        if state.user.disabled:
            raise invalid_token("The account of this access token is disabled.")
        if claims.roles is not None:
            if claims.roles != state.roles:
                raise invalid_token("The account's roles changed: refresh the access token.")
        elif not claims.scopes <= state.scopes:
            raise invalid_token("The access token holds scopes its account no longer has.")

    def _remember(self, digest: bytes, entry: _Verified) -> None:
        if len(self._verified) >= self._cache_size:
            # Evict the oldest insertion (dicts keep order): bounded memory, no scan.
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = entry

    def _cached_user_state(self, user_id: str) -> _UserState | None:
        """The account as a bearer token sees it, when read less than ``user_cache_ttl`` ago
        (renewed in the background while it is in use); None: ``_read_user_state`` reads it.
        Not a coroutine: on the hot path, a cache hit costs no coroutine."""
        state, due = self._users.lookup(user_id)
        if due:
            self._user_loads.refresh(
                self._user_flight(user_id), lambda: self._load_user_state(user_id)
            )
        return state

    async def _read_user_state(self, user_id: str) -> _UserState:
        """The account read from the store, by one request at a time (the others join it)."""
        return await self._user_loads.run(
            self._user_flight(user_id), lambda: self._load_user_state(user_id)
        )

    def _user_flight(self, user_id: str) -> str:
        # A read begun before an account changed is not joined by one after it.
        return f"{self._users.generation}:{user_id}"

    async def _load_user_state(self, user_id: str) -> _UserState:
        read_at = self._users.generation
        user = await self._db.users.get(user_id)
        if user is None:
            self._users.pop(user_id)
            raise invalid_token("The account of this access token no longer exists.")
        kept = self._users.get(user_id)
        if kept is not None and kept.user == user:
            # Unchanged: the same state, renewed, so the principals built on it (and what
            # /v1/me made of them) stay, instead of every cached token rebuilding its own.
            self._users.put(user_id, kept, read_at=read_at)
            return kept
        state = _UserState(
            user=user,
            roles=frozenset(user.roles) | {IMPLICIT_ROLE},
            scopes=self._scopes.scopes_for_roles(user.roles),
        )
        # Not kept when an account changed while this read ran: answered, not cached.
        self._users.put(user_id, state, read_at=read_at)
        return state

    async def _verify(self, token: str, now: float) -> AccessClaims:
        if len(token) > self.max_token_bytes:
            raise invalid_token(f"The access token is longer than {self.max_token_bytes} bytes.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise invalid_token(f"The access token header is malformed: {exc}.") from exc
        # RFC 8725 section 3.2 / RFC 7515 section 5.2: a JSON member name twice is refused
        # (Python's json keeps the last one silently, another parser may keep the first).
        duplicate = duplicate_member(token)
        if duplicate is not None:
            part, name = duplicate
            raise invalid_token(f"The access token {part} names the member {name[:40]!r} twice.")
        alg, kid = check_header(header, ACCEPTED_ALGORITHMS)
        key = self.keys.verifying_key(kid, now)
        if key is None and await self.keys.reload_for_unknown_kid():
            key = self.keys.verifying_key(kid, now)
        if key is None:
            raise invalid_token("The access token names an unknown or expired signing key.")
        if alg != key.algorithm:
            raise invalid_token(f"The algorithm {alg} does not match the signing key.")
        try:
            payload = jwt.decode(
                token,
                key.public,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    # Times are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise invalid_token("The access token's signature is not valid.") from exc
        except jwt.InvalidAudienceError as exc:
            raise invalid_token("The access token is meant for another audience.") from exc
        except jwt.InvalidIssuerError as exc:
            raise invalid_token("The access token was issued by another issuer.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(f"The access token lacks the {exc.claim!r} claim.") from exc
        except jwt.DecodeError as exc:
            raise invalid_token("The access token is malformed (bad base64 or JSON).") from exc
        except jwt.InvalidTokenError as exc:
            raise invalid_token(f"The access token is not valid: {exc}.") from exc
        claims = parse_claims(payload)
        check_times(claims, now, self.leeway)
        # Defence in depth against a leaked signing key: what this server would never sign.
        if claims.expires_at - claims.issued_at > self.max_ttl + self.leeway:
            raise invalid_token(
                f"The access token lives longer ({int(claims.expires_at - claims.issued_at)} s)"
                f" than the {self.max_ttl} s this server issues."
            )
        if key.retired_at is not None and claims.issued_at > key.retired_at + self.leeway:
            raise invalid_token("The access token was issued after its signing key was retired.")
        if claims.session_id is not None and not claims.is_client:
            await self._check_sid_issued(claims.session_id)
        return claims

    async def _check_sid_issued(self, session_id: str) -> None:
        """A user token's ``sid`` must be a session this server created: looked up once per
        session id, then remembered (bounded), so the hot path never waits on the store."""
        if session_id in self._issued_sids:
            return
        if await self._db.sessions.get(session_id) is None:
            raise invalid_token("The access token names a session that was never issued.")
        if len(self._issued_sids) >= self._cache_size:
            del self._issued_sids[next(iter(self._issued_sids))]
        self._issued_sids[session_id] = None

    # -- revoking -------------------------------------------------------------------------

    def is_revoked(self, sid: str | None, jti: str | None) -> bool:
        return (sid is not None and sid in self._control.revoked) or (
            jti is not None and jti in self.jtis
        )

    async def revoke_jti(self, jti: str, expires_at: datetime) -> None:
        """Revoke one access token on every node, until ``expires_at`` (its ``exp``)."""
        if not jti or len(jti) > MAX_JTI_LENGTH:
            raise InvalidInput(f"A token id is 1 to {MAX_JTI_LENGTH} characters.")
        now = self._clock.now()
        if expires_at <= now:
            return  # expired already: nothing left to refuse
        until = expires_at.timestamp()
        self.jtis.add(jti, until)  # this node refuses it before the caller answers
        await self._stores.revocations.revoke_jti(
            jti, expires_at, now, origin=self._control.node_id
        )
        await self._control.announce([token_revoked(jti, until)])


__all__ = ["IssuedToken", "TokenPair", "TokenService"]
