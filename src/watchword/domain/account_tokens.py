"""Single-use account tokens sent by mail: verify an address, reset a password.

The mail carries a 256-bit random secret; the server keeps only its SHA-256. A token is used
once, expires, and a newer token of the same purpose supersedes the older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from watchword.domain.clock import Randomness, sha256_hex

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128


class TokenPurpose:
    VERIFY_EMAIL = "verify_email"  # the account's current address
    CHANGE_EMAIL = "change_email"  # a new address, which takes effect once verified
    PASSWORD_RESET = "password_reset"


@dataclass(frozen=True, slots=True)
class AccountToken:
    id: str
    user_id: str
    purpose: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    email: str  # the address the link was sent to
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


def new_token_secret(randomness: Randomness) -> tuple[str, str]:
    """(secret for the mail, hash for the store)."""
    secret = randomness.token(TOKEN_BYTES)
    return secret, sha256_hex(secret)


def plausible_token(secret: str) -> bool:
    return 0 < len(secret) <= MAX_TOKEN_LENGTH and secret.isascii()
