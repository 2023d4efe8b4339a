"""OAuth2 confidential clients (RFC 6749 section 2) and the opaque access tokens they get.

A client id is public; its secret (256 bits) is stored as SHA-256 and compared in constant
time. Opaque access tokens (``ww_at_...``) are stored the same way, with their expiry.
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

    def secret_matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, sha256_hex(secret))

    def public(self) -> dict[str, Any]:
        return {
            "client_id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "token_format": self.token_format.value,
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
