"""OAuth2 clients (RFC 6749 section 2) and the opaque access tokens some of them get.

A client id is public; a confidential client's secret (256 bits) is stored as SHA-256 and
compared in constant time. A public client (a SPA, a mobile app) has no secret at all and
proves itself with PKCE instead. Apps that sign people in (the authorization-code grant)
register their redirect URIs, checked by ``domain/redirect_uris.py``. Opaque access tokens
(``ww_at_...``) are stored as SHA-256 too, with their expiry.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from watchword.domain.apikeys import credential_revoked
from watchword.domain.clock import Randomness, sha256_hex

CLIENT_ID_PREFIX = "wwc_"
OPAQUE_TOKEN_PREFIX = "ww_at_"
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
_CLIENT_ID_SHAPE = re.compile(r"^wwc_[0-9a-f]{24}$")
_OPAQUE_SHAPE = re.compile(r"^ww_at_[A-Za-z0-9_-]{43}$")
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class ClientType(StrEnum):
    CONFIDENTIAL = "confidential"  # holds a secret (a server-side app, a machine)
    PUBLIC = "public"  # cannot keep a secret (a browser or mobile app): PKCE only


class GrantType(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"


# Grants that rest on the client's secret alone: never for a public client (RFC 9700 2.5).
SECRET_ONLY_GRANTS = frozenset({GrantType.CLIENT_CREDENTIALS})
# Algorithms an app may ask its ID tokens to be signed with (RS256 is the OIDC default).
ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "EdDSA")
DEFAULT_ID_TOKEN_ALG = "RS256"


class TokenFormat(StrEnum):
    JWT = "jwt"  # RFC 9068 access tokens, verified locally
    OPAQUE = "opaque"  # random strings the server looks up


@dataclass(frozen=True, slots=True)
class OAuthClient:
    id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]
    token_format: TokenFormat
    created_at: datetime
    disabled: bool = False
    client_type: ClientType = ClientType.CONFIDENTIAL
    grant_types: frozenset[GrantType] = frozenset({GrantType.CLIENT_CREDENTIALS})
    redirect_uris: tuple[str, ...] = ()
    first_party: bool = False  # signs people in without asking their consent
    backchannel_logout_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    id_token_signed_response_alg: str = DEFAULT_ID_TOKEN_ALG

    @property
    def is_public(self) -> bool:
        return self.client_type is ClientType.PUBLIC

    def allows(self, grant: GrantType) -> bool:
        return grant in self.grant_types

    def secret_matches(self, secret: str) -> bool:
        # A public client has no secret: its empty hash never matches (still compared, so
        # both paths take the same time).
        return hmac.compare_digest(self.secret_hash, sha256_hex(secret)) and bool(self.secret_hash)

    def public(self) -> dict[str, Any]:
        return {
            "client_id": self.id,
            "name": self.name,
            "client_type": self.client_type.value,
            "scopes": sorted(self.scopes),
            "token_format": self.token_format.value,
            "grant_types": sorted(g.value for g in self.grant_types),
            "redirect_uris": list(self.redirect_uris),
            "first_party": self.first_party,
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
            "created_at": self.created_at.isoformat(),
            "disabled": self.disabled,
        }


@dataclass(frozen=True, slots=True)
class OpaqueToken:
    id: str
    token_hash: str
    client_id: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def client_changed(client_id: str, *, disabled: bool) -> dict[str, Any]:
    """Control event: a client was disabled or enabled (caches drop it on every node)."""
    return {**credential_revoked("client", client_id, None), "disabled": disabled}


def new_client_credentials(randomness: Randomness) -> tuple[str, str, str]:
    """(client id, secret shown once, SHA-256 of the secret)."""
    client_id = CLIENT_ID_PREFIX + randomness.new_id().replace("-", "")[:24]
    secret = randomness.token(SECRET_BYTES)
    return client_id, secret, sha256_hex(secret)


def new_opaque_token(randomness: Randomness) -> tuple[str, str]:
    """(token shown once, its SHA-256)."""
    token = OPAQUE_TOKEN_PREFIX + randomness.token(SECRET_BYTES)
    return token, sha256_hex(token)


def plausible_client_id(value: str) -> bool:
    return bool(_CLIENT_ID_SHAPE.match(value))


def plausible_client_secret(value: str) -> bool:
    return bool(_SECRET_SHAPE.match(value))


def looks_like_opaque_token(value: str) -> bool:
    return value.startswith(OPAQUE_TOKEN_PREFIX)


def plausible_opaque_token(value: str) -> bool:
    return bool(_OPAQUE_SHAPE.match(value))
