"""Access tokens (RFC 9068 JWT profile) and refresh tokens: their shape and their checks.

An access token is a JWS with header ``typ: at+jwt`` and ``kid``; its claims are ``iss``,
``sub``, ``aud``, ``exp``, ``iat``, ``jti``, ``scope`` (space separated), ``roles``, ``sid`` for
a token of a session and ``client_id`` for a token of a machine client. Signatures are checked
by PyJWT with an explicit algorithm and key object; this module checks everything around them:
the header a verifier must refuse (RFC 8725), the claim types, and the times against an
injected ``now`` with a small leeway.

A refresh token is opaque: ``wwr_`` and 256 random bits; the store keeps its SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchword.domain import events
from watchword.domain.clock import Randomness, sha256_hex
from watchword.domain.errors import InvalidCredential, InvalidInput
from watchword.domain.scopes import parse_scope

TOKEN_TYPE = "at+jwt"
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Header parameters that would let the token choose its own verification key.
KEY_CARRYING_HEADERS = ("jku", "x5u", "jwk", "x5c")
REGISTERED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope", "roles", "client_id"}
)
MAX_KID_LENGTH = 128
MAX_CLAIM_LENGTH = 255

REFRESH_PREFIX = "wwr_"
REFRESH_BYTES = 32
MAX_REFRESH_LENGTH = 128


def invalid_token(message: str) -> InvalidCredential:
    """The error every refused access token becomes (RFC 6750 ``invalid_token``)."""
    return InvalidCredential(message, code="invalid_token")


def invalid_grant(message: str) -> InvalidCredential:
    """The error every refused refresh token becomes (RFC 6749 section 5.2)."""
    return InvalidCredential(message, code="invalid_grant")


def looks_like_jws(value: str) -> bool:
    """Compact JWS serialisation: three base64url parts joined by two dots."""
    return value.count(".") == 2


# -- access tokens ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The claims of a verified access token, typed."""

    subject: str
    jti: str
    issued_at: float
    expires_at: float
    not_before: float | None
    scopes: frozenset[str]
    roles: frozenset[str] | None
    session_id: str | None
    client_id: str | None

    @property
    def is_client(self) -> bool:
        """A machine client's own token: no session, a client id."""
        return self.session_id is None and self.client_id is not None


def build_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    jti: str,
    issued_at: int,
    ttl: int,
    scopes: frozenset[str],
    roles: frozenset[str] | None,
    session_id: str | None,
    client_id: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if not subject or len(subject) > MAX_CLAIM_LENGTH:
        raise InvalidInput("A token subject is 1 to 255 characters.")
    if extra:
        clash = REGISTERED_CLAIMS.intersection(extra)
        if clash:
            raise InvalidInput("Extra claims cannot replace " + ", ".join(sorted(clash)) + ".")
    claims: dict[str, Any] = dict(extra or {})
    claims.update(
        {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": issued_at,
            "exp": issued_at + ttl,
            "jti": jti,
            "scope": " ".join(sorted(scopes)),
        }
    )
    if roles is not None:
        claims["roles"] = sorted(roles)
    if session_id is not None:
        claims["sid"] = session_id
    if client_id is not None:
        claims["client_id"] = client_id
    return claims


def check_header(header: dict[str, Any], accepted_algorithms: frozenset[str]) -> tuple[str, str]:
    """Refuse what RFC 8725 says a verifier must refuse; return ``(alg, kid)``."""
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise invalid_token("The access token header has no algorithm.")
    if alg.lower() == "none":
        raise invalid_token("Unsigned access tokens (alg none) are not accepted.")
    if alg not in accepted_algorithms:
        raise invalid_token(f"The algorithm {alg[:20]!r} is not accepted for access tokens.")
    for name in KEY_CARRYING_HEADERS:
        if name in header:
            raise invalid_token(f"The access token header must not carry {name!r}.")
    if "crit" in header:
        raise invalid_token("The access token header names critical extensions not supported.")
    if "b64" in header:
        raise invalid_token("Unencoded payloads (b64) are not accepted.")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise invalid_token("The token is not an access token (typ must be at+jwt).")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise invalid_token("The access token header has no usable key id (kid).")
    return alg, kid


def _number(payload: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise invalid_token(f"The access token lacks the {name!r} claim.")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_token(f"The {name!r} claim must be a number.")
    return float(value)


def _text(payload: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise invalid_token(f"The access token lacks the {name!r} claim.")
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_LENGTH:
        raise invalid_token(f"The {name!r} claim must be a short string.")
    return value


def parse_claims(payload: dict[str, Any]) -> AccessClaims:
    """Type-check the claims of a token whose signature, ``iss`` and ``aud`` are verified."""
    scope = payload.get("scope", "")
    if not isinstance(scope, str):
        raise invalid_token("The 'scope' claim must be a space-separated string.")
    try:
        scopes = parse_scope(scope)
    except InvalidInput as exc:
        raise invalid_token("The 'scope' claim is malformed.") from exc
    roles_claim = payload.get("roles")
    roles: frozenset[str] | None = None
    if roles_claim is not None:
        if not isinstance(roles_claim, list) or not all(isinstance(r, str) for r in roles_claim):
            raise invalid_token("The 'roles' claim must be a list of strings.")
        roles = frozenset(roles_claim)
    issued_at = _number(payload, "iat", required=True)
    expires_at = _number(payload, "exp", required=True)
    assert issued_at is not None and expires_at is not None
    subject = _text(payload, "sub", required=True)
    jti = _text(payload, "jti", required=True)
    assert subject is not None and jti is not None
    return AccessClaims(
        subject=subject,
        jti=jti,
        issued_at=issued_at,
        expires_at=expires_at,
        not_before=_number(payload, "nbf", required=False),
        scopes=scopes,
        roles=roles,
        session_id=_text(payload, "sid", required=False),
        client_id=_text(payload, "client_id", required=False),
    )


def duplicate_member(token: str) -> tuple[str, str] | None:
    """``("header" | "claims", name)`` when the compact JWS's header or payload JSON names a
    member twice (RFC 8725 section 3.2, RFC 7515 section 5.2), else None. Segments that do
    not decode are left for the JWT library to refuse."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    found: list[tuple[str, str]] = []
    label = "header"

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen and not found:
                found.append((label, name))
            seen.add(name)
        return dict(pairs)

    for label, segment in (("header", parts[0]), ("claims", parts[1])):  # noqa: B007
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
            json.loads(raw, object_pairs_hook=hook)
        except (ValueError, binascii.Error):
            return None
        if found:
            return found[0]
    return None


def check_times(claims: AccessClaims, now: float, leeway: float) -> None:
    """``exp``, ``nbf`` and ``iat`` against ``now``, each allowed ``leeway`` seconds of skew."""
    if now >= claims.expires_at + leeway:
        raise invalid_token("The access token has expired.")
    if claims.not_before is not None and claims.not_before > now + leeway:
        raise invalid_token("The access token is not valid yet (nbf is in the future).")
    if claims.issued_at > now + leeway:
        raise invalid_token("The access token was issued in the future (iat).")


# -- refresh tokens ---------------------------------------------------------------------------

ACTIVE = "active"
ROTATED = "rotated"
# An app token ended with its grant (code reuse, disconnect): refused, never "reuse".
REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """One refresh token of a session. Rotated tokens are kept (marked) so reuse is seen."""

    id: str
    session_id: str
    token_hash: str
    created_at: datetime
    state: str = ACTIVE
    rotated_at: datetime | None = None
    # The pair that replaced this token, sealed with the master key, for the grace window.
    successor_sealed: str | None = None
    # The app grant (OpenID Connect) of an app's refresh token; None for the person's own.
    grant_id: str | None = None


def new_refresh_secret(randomness: Randomness) -> tuple[str, str]:
    """A fresh refresh token and the hash the store keeps."""
    secret = REFRESH_PREFIX + randomness.token(REFRESH_BYTES)
    return secret, sha256_hex(secret)


def plausible_refresh(value: str) -> bool:
    return value.startswith(REFRESH_PREFIX) and len(value) <= MAX_REFRESH_LENGTH and value.isascii()


# -- control events ---------------------------------------------------------------------------


def token_revoked(jti: str, expires_at: float) -> dict[str, Any]:
    """``expires_at`` (epoch seconds): after it the token is dead anyway."""
    return {"type": events.TOKEN_REVOKED, "jti": jti, "expires_at": expires_at}


def keys_changed(kid: str) -> dict[str, Any]:
    return {"type": events.KEYS_CHANGED, "kid": kid}
