"""Passkeys (WebAuthn credentials) as values: the stored credential and the server-side
challenge of a ceremony. The ceremonies themselves are in ``domain/webauthn.py``.

A challenge is kept only as its SHA-256 digest: the browser sends the challenge back inside
``clientDataJSON``, so the digest is enough to find it, and a leaked table row opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# What a challenge is for: one purpose never completes another ceremony.
REGISTER = "register"
SIGN_IN = "sign_in"  # a discoverable sign-in, no user named beforehand
SECOND_FACTOR = "second_factor"  # after the password, for the user of an MFA challenge
STEP_UP = "step_up"  # a signed-in session proving its user again (in place of the password)

MAX_NAME = 100
METHOD = "webauthn"  # how the MFA challenge step lists it


@dataclass(frozen=True, slots=True)
class Passkey:
    id: str
    user_id: str
    credential_id: str  # base64url of the raw id, as the browser sends it back
    public_key: bytes  # COSE_Key, as the authenticator gave it
    sign_count: int
    name: str
    transports: tuple[str, ...]
    backed_up: bool  # synced by its provider (a multi-device credential)
    created_at: datetime
    last_used_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "backed_up": self.backed_up,
            "transports": list(self.transports),
        }


@dataclass(frozen=True, slots=True)
class PasskeyChallenge:
    challenge_hash: str
    purpose: str
    user_id: str | None  # None for a discoverable sign-in
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


def amr_of(*, backed_up: bool, after_password: bool) -> list[str]:
    """RFC 8176 values for a sign-in with a passkey.

    ``hwk`` for a device-bound key, ``swk`` for a synced one (its private key leaves the
    device). A passkey sign-in needs user verification (PIN or biometric, WebAuthn does not
    say which), so the key alone is two factors: ``mfa``. After a password: ``pwd`` too.
    """
    key = "swk" if backed_up else "hwk"
    return ["pwd", key, "mfa"] if after_password else [key, "mfa"]
