"""Second factors: TOTP (RFC 6238) with single-use time steps, recovery codes, and the
challenge that stands between a correct password and a session when a second factor is on.

Pure logic on ``pyotp``: no store, no framework. Secrets at rest are sealed by the master key
(the service does that); recovery codes and challenges are kept only as SHA-256 digests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp

from watchword.domain.sessions import Session

OTP = "otp"  # RFC 8176: a one-time password (TOTP)
MULTI_FACTOR = "mfa"

TOTP_DIGITS = 6
TOTP_PERIOD = 30
VALID_WINDOW = 1  # the step before and after the current one also count (clock skew)
RECOVERY_CODES = 10
METHODS = ("totp", "recovery_code")


def new_totp_secret() -> str:
    """160 random bits, base32 (RFC 4226 section 4 recommends 160)."""
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=account, issuer_name=issuer
    )


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (RFC 6238 counter) within ``VALID_WINDOW`` of ``now`` whose code is
    ``code``, compared in constant time; None when none matches."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = totp.timecode(now)
    found: int | None = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step  # keep looping: the same work whichever step matched
    return found


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes of 160 random bits, shown as four groups of eight base32 characters."""
    codes = []
    for _ in range(count):
        raw = base64.b32encode(secrets.token_bytes(20)).decode()  # 32 characters
        codes.append("-".join(raw[i : i + 8] for i in range(0, 32, 8)))
    return codes


def normalize_recovery_code(code: str) -> str:
    return code.strip().replace("-", "").replace(" ", "").upper()


def digest(value: str) -> str:
    """SHA-256, hex: how recovery codes and challenges are stored (each has >= 128 random
    bits, so a fast hash is enough; lookups by digest need no secret comparison)."""
    return hashlib.sha256(value.encode()).hexdigest()


def recovery_code_digest(code: str) -> str:
    return digest(normalize_recovery_code(code))


def new_challenge() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TotpFactor:
    user_id: str
    secret_sealed: str
    created_at: datetime
    confirmed_at: datetime | None = None
    last_step: int | None = None

    @property
    def active(self) -> bool:
        return self.confirmed_at is not None


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    challenge_hash: str
    user_id: str
    mode: str  # "cookie" or "token": how the sign-in completes
    device_name: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class FactorReset:
    """What an administrator's reset of a user's second factors removed and ended."""

    totp: bool  # a confirmed TOTP secret (with its recovery codes) was on
    passkeys: int
    sessions: list[Session]
