"""Who is calling: a user (through a session or a key) or a client, or nobody."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from watchword.domain.sessions import Session
    from watchword.domain.users import User


class AuthMethod(StrEnum):
    NONE = "none"
    COOKIE = "cookie"
    BEARER_JWT = "bearer_jwt"
    BEARER_OPAQUE = "bearer_opaque"
    API_KEY = "api_key"
    SIGNATURE = "http_signature"
    BASIC = "basic"
    COMPAT_SESSION = "compat_session"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["anonymous", "user", "client"]
    method: AuthMethod
    user_id: str | None = None
    client_id: str | None = None
    session_id: str | None = None
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    credential_id: str | None = None
    user: User | None = field(default=None, compare=False, repr=False)
    session: Session | None = field(default=None, compare=False, repr=False)
    # Views derived from this (immutable) principal, computed once per cached principal.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # Derived from ``kind`` and ``method`` when made: read on every request, so plain
    # attributes rather than properties (each property read is a Python call).
    is_authenticated: bool = field(init=False, compare=False, repr=False)
    # Only what the browser attaches by itself (the cookie) can be forged cross-site.
    needs_csrf: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_authenticated", self.kind != "anonymous")
        object.__setattr__(self, "needs_csrf", self.method is AuthMethod.COOKIE)

    def missing_scopes(self, required: frozenset[str]) -> frozenset[str]:
        return required - self.scopes

    def has_role(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = Principal(kind="anonymous", method=AuthMethod.NONE)
