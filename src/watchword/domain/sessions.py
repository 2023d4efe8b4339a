"""Sessions: the one revocable thing every credential hangs off.

A browser holds an opaque 256-bit secret in a cookie; the server keeps only its SHA-256.
Idle and absolute expiry each have their own getter; the server compares with ``now``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from watchword.domain.clock import Randomness, sha256_hex

SECRET_BYTES = 32
MAX_SECRET_LENGTH = 128  # anything longer in a cookie is not ours


class RevokeReason(StrEnum):
    LOGOUT = "logout"
    REVOKED = "revoked"
    REVOKED_OTHERS = "revoked_by_user"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    USER_DISABLED = "user_disabled"
    ADMIN = "admin"
    EVICTED = "session_limit"
    REFRESH_REUSE = "refresh_token_reuse"
    EXPIRED = "expired"
    REPLACED = "replaced_by_sign_in"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout: timedelta
    lifetime: timedelta
    touch_interval: timedelta


@functools.cache
def _seconds(count: int) -> timedelta:
    # A session's idle timeout is read on every cookie request (its check) and every /v1/me
    # (its times); a deployment has one or two values, each made once.
    return timedelta(seconds=count)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: str
    secret_hash: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute
    idle_timeout_seconds: int
    kind: str = "cookie"  # cookie | token | compat
    device_name: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def idle_expires_at(self, last_seen: datetime | None = None) -> datetime:
        return (last_seen or self.last_seen_at) + _seconds(self.idle_timeout_seconds)

    def effective_expires_at(self, last_seen: datetime | None = None) -> datetime:
        return min(self.expires_at, self.idle_expires_at(last_seen))

    def is_live(self, now: datetime, last_seen: datetime | None = None) -> bool:
        return self.revoked_at is None and now < self.effective_expires_at(last_seen)

    def touched(self, now: datetime) -> Session:
        return replace(self, last_seen_at=now)


def new_session_secret(randomness: Randomness) -> tuple[str, str]:
    """A fresh cookie secret and the hash the server stores (a new one at every login)."""
    secret = randomness.token(SECRET_BYTES)
    return secret, sha256_hex(secret)


def plausible_secret(value: str) -> bool:
    return 0 < len(value) <= MAX_SECRET_LENGTH and value.isascii()


def csrf_token_for(session_id: str, key: bytes) -> str:
    """The session's CSRF token, derived (not stored): HMAC of its id under the master key."""
    mac = hmac.new(key, b"csrf\x00" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token_matches(session_id: str, key: bytes, presented: str | None) -> bool:
    if not presented or len(presented) > 128:
        return False
    return hmac.compare_digest(csrf_token_for(session_id, key), presented)
