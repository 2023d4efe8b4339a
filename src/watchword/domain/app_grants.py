"""What a person gave an app that signs them in (OpenID Connect Core 1.0, RFC 6749 4.1).

An ``AppGrant`` is one authorization: the single-use code (kept as SHA-256 only, valid
``CODE_TTL`` seconds) and, once the app redeemed it, the access and refresh tokens issued
from it. It rides on the person's Watchword session (``session_id``): the session ending ends
the grant. An ``AppConsent`` remembers which scopes a person allowed an app, so the consent
page is asked once per user and app (and again when the app asks for more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from watchword.domain.clock import Randomness, sha256_hex

CODE_PREFIX = "ww_ac_"
CODE_BYTES = 32
CODE_TTL = 60  # seconds (RFC 6749 4.1.2 recommends at most ten minutes)
MAX_NONCE = 512
MAX_STATE = 2048


@dataclass(frozen=True, slots=True)
class AppGrant:
    id: str
    code_hash: str
    client_id: str
    user_id: str
    session_id: str
    redirect_uri: str
    scopes: frozenset[str]
    nonce: str | None
    code_challenge: str | None
    created_at: datetime
    code_expires_at: datetime
    code_used_at: datetime | None = None
    revoked_at: datetime | None = None
    # (jti, exp as epoch seconds) of every access token issued under the grant.
    access_tokens: tuple[tuple[str, float], ...] = field(default=())

    def code_live(self, now: datetime) -> bool:
        return self.code_used_at is None and self.revoked_at is None and now < self.code_expires_at


@dataclass(frozen=True, slots=True)
class AppConsent:
    user_id: str
    client_id: str
    scopes: frozenset[str]
    created_at: datetime

    def covers(self, scopes: frozenset[str]) -> bool:
        return scopes <= self.scopes


def new_code(randomness: Randomness) -> tuple[str, str]:
    """(code shown once to the app, its SHA-256)."""
    code = CODE_PREFIX + randomness.token(CODE_BYTES)
    return code, sha256_hex(code)


def plausible_code(value: str) -> bool:
    return value.startswith(CODE_PREFIX) and len(value) <= 128


# OpenID Connect Back-Channel Logout 1.0 section 2.4: the event a logout token carries.
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass(frozen=True, slots=True)
class PendingLogout:
    """One back-channel logout to deliver: the app, the session that ended, where to POST."""

    id: str  # also the logout token's jti
    client_id: str
    session_id: str
    user_id: str
    uri: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    sent_at: datetime | None = None
    last_error: str | None = None
