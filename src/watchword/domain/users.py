"""User accounts: identity, roles, and the rules for email addresses."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from watchword.domain.errors import InvalidEmail, InvalidInput

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
# Deliberately loose: one "@", a dot in the domain, no spaces or control characters.
_EMAIL_SHAPE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
_ROLE_SHAPE = re.compile(r"^[a-z][a-z0-9_:-]{0,63}$")


def normalize_email(raw: str) -> str:
    """Fold case and surrounding whitespace so one mailbox is one account."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or not _EMAIL_SHAPE.match(email):
        raise InvalidEmail()
    return email


def check_label(value: str | None, what: str, max_length: int = MAX_NAME_LENGTH) -> None:
    """Free-text labels (names, device names): bounded, and no control characters, which
    databases refuse (PostgreSQL rejects NUL) and logs and terminals misrender."""
    if value is None:
        return
    if len(value) > max_length:
        raise InvalidInput(f"{what} is at most {max_length} characters.")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidInput(f"{what} must not contain control characters.")


def validate_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    cleaned = []
    for role in roles:
        if not isinstance(role, str) or not _ROLE_SHAPE.match(role):
            raise InvalidInput(f"Invalid role name: {role!r}.")
        if role not in cleaned:
            cleaned.append(role)
    return tuple(sorted(cleaned))


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    first_name: str | None = None
    last_name: str | None = None
    roles: tuple[str, ...] = ()
    disabled: bool = False
    email_verified_at: datetime | None = None

    def public(self) -> dict[str, object]:
        """The user as the API shows it: never the password hash."""
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "roles": list(self.roles),
            "disabled": self.disabled,
            "email_verified": self.email_verified_at is not None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
