"""API keys: ``ww_live_<public id>_<secret>``, looked up by public id, stored as SHA-256.

The public id (64 random bits, hex) finds the row; the 256-bit secret proves possession. The
server keeps the SHA-256 of the whole key and compares it in constant time.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchword.domain.clock import Randomness, sha256_hex

API_KEY_PREFIX = "ww_live_"
PUBLIC_ID_LENGTH = 16
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
_KEY_SHAPE = re.compile(r"^ww_live_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

# Control event: a machine credential (API key, signing key, opaque token, client) was
# revoked or changed; every node drops it from its caches.
CREDENTIAL_REVOKED = "credential.revoked"


def credential_revoked(
    kind: str, credential_id: str, user_id: str | None, *, key_id: str | None = None
) -> dict[str, Any]:
    """``key_id``: the row id of a key whose ``credential_id`` is another id (an API key is
    cached by its public id; the sockets it opened know it by its row id)."""
    message: dict[str, Any] = {
        "type": CREDENTIAL_REVOKED,
        "kind": kind,
        "credential_id": credential_id,
        "user_id": user_id,
    }
    if key_id is not None:
        message["key_id"] = key_id
    return message


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    public_id: str
    user_id: str
    name: str
    secret_hash: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def prefix(self) -> str:
        """What the key list shows: enough to recognise a key, useless to an attacker."""
        return f"{API_KEY_PREFIX}{self.public_id}"

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def matches(self, key_hash: str) -> bool:
        return hmac.compare_digest(self.secret_hash, key_hash)

    def public(self, last_used_at: datetime | None = None) -> dict[str, Any]:
        used = last_used_at or self.last_used_at
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "last_used_at": used.isoformat() if used else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def new_api_key(randomness: Randomness) -> tuple[str, str, str]:
    """A fresh key: (full key shown once, public id, SHA-256 of the full key)."""
    public_id = randomness.new_id().replace("-", "")[:PUBLIC_ID_LENGTH]
    secret = randomness.token(SECRET_BYTES)
    key = f"{API_KEY_PREFIX}{public_id}_{secret}"
    return key, public_id, sha256_hex(key)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX)


def parse_api_key(value: str) -> str | None:
    """The public id of a well-formed key, or None."""
    match = _KEY_SHAPE.match(value)
    return match.group(1) if match else None
