"""``Verifier``: local verification of Watchword access tokens (RFC 9068), with revocations.

The signature, ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` are checked here, with the keys of
the issuer's JWKS; no request goes to the issuer per token. Revocations are pushed by a feed
(see ``_revocations``): a token whose session or ``jti`` is revoked is refused on the next call,
including when it is served from the bounded cache of already verified tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self

import httpx
import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from watchword.sdk._errors import (
    InsufficientScope,
    InvalidToken,
    RevocationFeedRefused,
    RevocationFeedStale,
    TokenExpired,
    TokenRevoked,
    VerifierUnavailable,
)
from watchword.sdk._jwks import KeySet, SigningKey
from watchword.sdk._revocations import (
    Credential,
    RevocationList,
    RevocationSource,
    SSERevocationSource,
)

__all__ = ["DEFAULT_ALGORITHMS", "SUPPORTED_ALGORITHMS", "VerifiedToken", "Verifier"]

logger = logging.getLogger("watchword.sdk")

DEFAULT_ALGORITHMS = ("EdDSA", "ES256", "RS256")
SUPPORTED_ALGORITHMS = frozenset({"EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256"})
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti"]
CRIT_REFUSED = "The token has critical header extensions that are not understood."
KID_REFUSED = "The token has no usable key id (kid)."
HEADER_CACHE_SIZE = 256
DEFAULT_FEED_STALENESS = 60.0
DEFAULT_FEED_WAIT = 5.0
_KID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A verified access token: who it speaks for and what it allows.

    ``session_id`` is the ``sid`` (absent for client tokens), ``client_id`` is set for client
    tokens, ``scopes`` comes from the space-separated ``scope`` claim. ``claims`` holds every
    claim, read-only.
    """

    subject: str
    token_id: str
    issuer: str
    audience: tuple[str, ...]
    issued_at: float
    expires_at: float
    key_id: str
    session_id: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def missing_scopes(self, required: Iterable[str]) -> frozenset[str]:
        return frozenset(required) - self.scopes

    def require_scopes(self, *required: str) -> Self:
        """Returns itself, or raises ``InsufficientScope`` naming what is missing."""
        missing = self.missing_scopes(required)
        if missing:
            raise InsufficientScope(missing)
        return self


class Verifier:
    """Verifies Watchword access tokens locally and refuses revoked ones.

    Example (a service that received ``Authorization: Bearer <token>``)::

        verifier = Verifier(
            issuer="https://auth.example.com",
            audience="watchword",
            credential=os.environ["WATCHWORD_FEED_KEY"],  # holds revocations:read
            max_feed_staleness=60,
        )
        token = verifier.verify(bearer)           # or: await verifier.averify(bearer)
        print(token.subject, token.scopes)

    With ``credential`` (or an explicit ``revocations`` source) the verifier follows the
    server's revocation stream in the background: a thread for ``verify``, an asyncio task for
    ``averify``, started on first use or by ``start()`` / ``await astart()``; stop it with
    ``close()`` / ``await aclose()`` or use the verifier as a (async) context manager.

    It fails closed. ``start()`` and the first call wait up to ``feed_wait`` seconds for the
    feed's first snapshot. A feed the server refuses (HTTP 401/403: a wrong or revoked
    credential, or one without ``revocations:read``) raises ``RevocationFeedRefused`` naming
    the cause, at start and on every call until the feed is accepted. A feed that has never
    synced, or has been down longer than ``max_feed_staleness`` seconds (60 by default),
    makes every call raise ``RevocationFeedStale`` (a 503). Only ``fail_open=True`` turns
    both into a logged warning, with tokens accepted on what the verifier last knew.

    Errors: ``InvalidToken`` (and its ``TokenExpired``/``TokenRevoked``), each with a one-line
    ``description``; ``KeySetUnavailable`` and ``RevocationFeedStale`` when it cannot decide.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str] = "watchword",
        *,
        jwks_url: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 10.0,
        revocations: RevocationSource | None = None,
        credential: Credential | None = None,
        max_feed_staleness: float | None = None,
        fail_open: bool = False,
        feed_wait: float = DEFAULT_FEED_WAIT,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        jwks_min_refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= SUPPORTED_ALGORITHMS:
            raise ValueError(
                "algorithms must be asymmetric algorithms among "
                + ", ".join(sorted(SUPPORTED_ALGORITHMS))
                + " (never 'none' or HMAC)"
            )
        if leeway < 0 or max_token_bytes < 256 or cache_size < 0:
            raise ValueError("leeway >= 0, max_token_bytes >= 256 and cache_size >= 0")
        if revocations is not None and credential is not None:
            raise ValueError("give either a revocations source or a credential, not both")
        base = issuer.rstrip("/")
        if credential is not None:
            revocations = SSERevocationSource(
                f"{base}/v1/revocations/stream",
                credential,
                http_client=http_client,
                async_http_client=async_http_client,
            )
        if max_feed_staleness is not None and (revocations is None or max_feed_staleness <= 0):
            raise ValueError("max_feed_staleness needs a revocation feed and a positive bound")
        if feed_wait < 0:
            raise ValueError("feed_wait must be >= 0")
        if revocations is not None and max_feed_staleness is None and not fail_open:
            max_feed_staleness = DEFAULT_FEED_STALENESS
        self.fail_open = fail_open
        self.feed_wait = float(feed_wait)
        # Without a feed there is nothing to wait for: the first call must not stall.
        self._waited_for_feed = revocations is None
        self._last_warning = 0.0
        self.issuer = issuer
        self.audience: tuple[str, ...] = (
            (audience,) if isinstance(audience, str) else tuple(audience)
        )
        if not self.audience:
            raise ValueError("audience must name at least one audience")
        self.algorithms = allowed
        self.leeway = float(leeway)
        self.max_feed_staleness = max_feed_staleness
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self._http = http_client
        self._ahttp = async_http_client
        self._owned_http: httpx.Client | None = None
        self._owned_ahttp: httpx.AsyncClient | None = None
        self._decoder = jwt.PyJWT()
        self._cache: dict[str, VerifiedToken] = {}
        self._headers: dict[str, tuple[dict[str, Any], str]] = {}
        self._cache_size = cache_size
        self.keys = KeySet(
            jwks_url or f"{base}/.well-known/jwks.json",
            algorithms=allowed,
            clock=clock,
            sync_http=self._sync_client,
            async_http=self._async_client,
            min_refetch_interval=jwks_min_refetch_interval,
            on_keys_removed=self._cache.clear,
        )
        self.source = revocations
        self.revocations = RevocationList(clock, retention_slack=self.leeway + 1.0)
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    # -- verification -------------------------------------------------------------------------

    def verify(self, token: str) -> VerifiedToken:
        """The verified token, or raises (see the class docstring). May block on a JWKS fetch."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        header, kid = self._header(token)
        self._ensure_thread()
        if not self._waited_for_feed:
            self._waited_for_feed = True
            self.revocations.settled.wait(self.feed_wait)
        return self._finish(token, header, self.keys.resolve(kid))

    async def averify(self, token: str) -> VerifiedToken:
        """``verify`` for asyncio: JWKS fetches do not block the event loop."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        header, kid = self._header(token)
        self._ensure_task()
        if not self._waited_for_feed:
            self._waited_for_feed = True
            await self._await_settled(self.feed_wait)
        return self._finish(token, header, await self.keys.aresolve(kid))

    @property
    def feed_staleness(self) -> float | None:
        """Seconds since the revocation feed was last known healthy: 0 while it is up,
        ``inf`` before it first synced, None without a feed."""
        if self.source is None:
            return None
        return self.revocations.staleness

    def _cached(self, token: str) -> VerifiedToken | None:
        verified = self._cache.get(token) if isinstance(token, str) else None
        if verified is None:
            return None
        if self._clock() >= verified.expires_at + self.leeway:
            self._cache.pop(token, None)
            return None
        self._check_live(verified)
        return verified

    def _check_live(self, verified: VerifiedToken) -> None:
        """What no cache may skip: the revocation list, and whether it can be trusted."""
        if self.source is None:
            return
        self._check_feed()
        why = self.revocations.revoked(
            verified.session_id,
            verified.token_id,
            subject=verified.subject,
            client_id=verified.client_id,
            issued_at=verified.issued_at,
        )
        if why is not None:
            raise TokenRevoked(_REVOKED[why])

    def _check_feed(self) -> None:
        """Fail closed on a refused, never-synced or stale feed (unless ``fail_open``)."""
        revocations = self.revocations
        problem: VerifierUnavailable | None = None
        if revocations.refused is not None:
            problem = RevocationFeedRefused(
                f"The revocation feed is refused: {revocations.refused}."
            )
        elif self.max_feed_staleness is not None:
            staleness = revocations.staleness
            if staleness > self.max_feed_staleness:
                last_error = getattr(self.source, "last_error", None)
                problem = RevocationFeedStale(
                    (
                        "The revocation feed has not synced yet"
                        if math.isinf(staleness)
                        else f"The revocation feed has been down for {staleness:.0f} s"
                    )
                    + (f" ({last_error})" if last_error else "")
                    + "; tokens cannot be trusted."
                )
        if problem is None:
            return
        if not self.fail_open:
            raise problem
        now = self._clock()
        if now - self._last_warning >= 60.0:  # fail_open: say so, but not per request
            self._last_warning = now
            logger.warning("accepting tokens anyway (fail_open=True): %s", problem.description)

    async def _await_settled(self, within: float) -> None:
        if self.revocations.settled.is_set() or within <= 0:
            return
        deadline = asyncio.get_running_loop().time() + within
        while not self.revocations.settled.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.02, remaining))

    def _header(self, token: str) -> tuple[dict[str, Any], str]:
        if not isinstance(token, str) or not token:
            raise InvalidToken("No token was given.")
        if len(token) > self.max_token_bytes:
            raise InvalidToken(f"The token is longer than {self.max_token_bytes} bytes.")
        if token.count(".") != 2:
            raise InvalidToken("The token is not a signed JWT (three dot-separated parts).")
        # Every token of one signing key carries the same header segment: parse and vet it
        # once. PyJWT decodes the whole token again, signature included, in ``_finish``.
        segment = token[: token.index(".")]
        known = self._headers.get(segment)
        if known is not None:
            return known
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise InvalidToken("The token is not valid base64url JSON.") from exc
        except jwt.InvalidTokenError as exc:
            # PyJWT already refuses unknown ``crit`` extensions and non-string ``kid`` values.
            if "crit" in str(exc):
                raise InvalidToken(CRIT_REFUSED) from exc
            if "Key ID" in str(exc):
                raise InvalidToken(KID_REFUSED) from exc
            raise InvalidToken("The token's header is invalid.") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidToken("The token is not signed (alg none is refused).")
        if alg not in self.algorithms:
            raise InvalidToken(f"The token's algorithm {_safe(alg)} is not accepted.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("The token is not an access token (typ must be at+jwt).")
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise InvalidToken(f"The token carries a {name} header, which is refused.")
        if "crit" in header:
            raise InvalidToken(CRIT_REFUSED)
        kid = header.get("kid")
        if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
            raise InvalidToken(KID_REFUSED)
        if len(self._headers) >= HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = (header, kid)
        return header, kid

    def _finish(self, token: str, header: Mapping[str, Any], key: SigningKey) -> VerifiedToken:
        if key.algorithm != header["alg"]:
            raise InvalidToken("The token's algorithm does not match its signing key.")
        try:
            claims = self._decoder.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=list(self.audience),
                issuer=self.issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": REQUIRED_CLAIMS,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("The token's signature is invalid.") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("The token is not meant for this audience.") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("The token was not issued by the expected issuer.") from exc
        except InvalidSubjectError as exc:
            raise InvalidToken("The token's sub claim is not a non-empty string.") from exc
        except InvalidJTIError as exc:
            raise InvalidToken("The token's jti claim is not a non-empty string.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The token has no {_safe(exc.claim)} claim.") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("The token is malformed.") from exc
        verified = self._validate(claims, key.kid)
        self._check_live(verified)
        self._remember(token, verified)
        return verified

    def _validate(self, claims: dict[str, Any], kid: str) -> VerifiedToken:
        now = self._clock()
        exp = _number(claims, "exp")
        iat = _number(claims, "iat")
        if now >= exp + self.leeway:
            raise TokenExpired("The token has expired.")
        if iat > now + self.leeway:
            raise InvalidToken("The token was issued in the future.")
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway:
            raise InvalidToken("The token is not valid yet.")
        scope = _optional_str(claims, "scope") or ""
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("The token's roles claim is not a list of strings.")
        aud = claims["aud"]
        return VerifiedToken(
            subject=_required_str(claims, "sub"),
            token_id=_required_str(claims, "jti"),
            issuer=self.issuer,
            audience=(aud,) if isinstance(aud, str) else tuple(aud),
            issued_at=iat,
            expires_at=exp,
            key_id=kid,
            session_id=_optional_str(claims, "sid"),
            client_id=_optional_str(claims, "client_id"),
            scopes=frozenset(scope.split()),
            roles=frozenset(roles),
            claims=MappingProxyType(claims),
        )

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        if self._cache_size == 0:
            return
        cache = self._cache
        while len(cache) >= self._cache_size:
            try:  # oldest first; another thread may be evicting at the same time
                cache.pop(next(iter(cache)), None)
            except (StopIteration, RuntimeError):
                break
        cache[token] = verified

    # -- the revocation feed ------------------------------------------------------------------

    def start(self) -> None:
        """Follows the revocation feed in a daemon thread (idempotent); waits up to
        ``feed_wait`` s for its first snapshot and raises ``RevocationFeedRefused`` when the
        server refused it (unless ``fail_open``)."""
        self._ensure_thread()
        if self.source is not None and not self._waited_for_feed:
            self._waited_for_feed = True
            self.revocations.settled.wait(self.feed_wait)
            try:
                self._raise_if_refused()
            except RevocationFeedRefused:
                self.close()
                raise

    async def astart(self) -> None:
        """Follows the revocation feed in an asyncio task of the running loop (idempotent);
        waits and raises as ``start`` does."""
        self._ensure_task()
        if self.source is not None and not self._waited_for_feed:
            self._waited_for_feed = True
            await self._await_settled(self.feed_wait)
            try:
                self._raise_if_refused()
            except RevocationFeedRefused:
                await self.aclose()
                raise

    def _raise_if_refused(self) -> None:
        if self.revocations.refused is not None and not self.fail_open:
            raise RevocationFeedRefused(
                f"The revocation feed is refused: {self.revocations.refused}."
            )

    def wait_for_feed(self, within: float) -> bool:
        """Blocks until the feed first synced (a snapshot arrived); False on timeout."""
        return self.revocations.synced.wait(within)

    async def await_feed(self, within: float) -> bool:
        """``wait_for_feed`` without blocking the loop: False if not synced ``within`` s."""
        if self.revocations.synced.is_set():
            return True
        return await asyncio.to_thread(self.revocations.synced.wait, within)

    def _ensure_thread(self) -> None:
        if self.source is None or self._thread is not None or self._task is not None:
            return
        with self._start_lock:
            if self._thread is None and self._task is None and not self._stop.is_set():
                thread = threading.Thread(
                    target=self.source.run,
                    args=(self.revocations, self._stop),
                    name="watchword-revocations",
                    daemon=True,
                )
                self._thread = thread
                thread.start()

    def _ensure_task(self) -> None:
        if self.source is None or self._thread is not None or self._task is not None:
            return
        with self._start_lock:
            if self._thread is None and self._task is None and not self._stop.is_set():
                self._task = asyncio.get_running_loop().create_task(
                    self.source.arun(self.revocations), name="watchword-revocations"
                )

    def close(self) -> None:
        """Stops the feed thread and closes the HTTP clients the verifier created."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            interrupt = getattr(self.source, "interrupt", None)
            if callable(interrupt):
                interrupt()
            thread.join(timeout=5.0)
        if self._owned_http is not None:
            self._owned_http.close()
            self._owned_http = None

    async def aclose(self) -> None:
        """Stops the feed task (or thread) and closes the verifier's own HTTP clients."""
        task = self._task
        self._stop.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.close)
        if self._owned_ahttp is not None:
            await self._owned_ahttp.aclose()
            self._owned_ahttp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _sync_client(self) -> httpx.Client:
        if self._http is not None:
            return self._http
        if self._owned_http is None:
            self._owned_http = httpx.Client(timeout=10.0)
        return self._owned_http

    def _async_client(self) -> httpx.AsyncClient:
        if self._ahttp is not None:
            return self._ahttp
        if self._owned_ahttp is None:
            self._owned_ahttp = httpx.AsyncClient(timeout=10.0)
        return self._owned_ahttp


_REVOKED = {
    "session": "The token's session has been revoked.",
    "token": "The token has been revoked.",
    "client": "The token's client has been disabled.",
    "user": "The token's account has been disabled or deleted.",
}


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"The token's {name} claim is not a number.")
    return float(value)


def _required_str(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"The token's {name} claim is not a non-empty string.")
    return value


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    if name not in claims:
        return None
    return _required_str(claims, name)


def _safe(value: object) -> str:
    """Token-controlled text made fit for a one-line error description."""
    text = re.sub(r"[^A-Za-z0-9+._-]", "?", str(value))[:32]
    return text or "?"
