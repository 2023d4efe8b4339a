"""Roles grant scopes; a credential's effective scopes never exceed its owner's."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from watchword.domain.errors import InvalidInput

IMPLICIT_ROLE = "user"
# OpenID Connect identity scopes: what an app may learn about who signed in. The default
# ``user`` role grants them, so the permission rule never strips them from an app's token.
IDENTITY_SCOPES = frozenset({"openid", "profile", "email"})
_SCOPE_SHAPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 scope-token


def parse_scope(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    items = value.split() if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not _SCOPE_SHAPE.match(item):
            raise InvalidInput(f"Invalid scope: {item!r}.")
    return frozenset(items)


class ScopePolicy:
    def __init__(self, role_scopes: Mapping[str, Iterable[str]]) -> None:
        self._role_scopes = {role: frozenset(scopes) for role, scopes in role_scopes.items()}

    def scopes_for_roles(self, roles: Iterable[str]) -> frozenset[str]:
        granted: set[str] = set(self._role_scopes.get(IMPLICIT_ROLE, ()))
        for role in roles:
            granted |= self._role_scopes.get(role, frozenset())
        return frozenset(granted)

    # -- machines ---------------------------------------------------------------

    def effective(self, carried: frozenset[str], roles: Iterable[str]) -> frozenset[str]:
        """What a credential may do now: what it carries, within what its owner holds."""
        return carried & self.scopes_for_roles(roles)


class InvalidScope(InvalidInput):
    """A requested scope is malformed or beyond what the credential (or owner) may grant."""

    code = "invalid_scope"
    default_message = "The requested scope is not allowed."


def require_subset(requested: frozenset[str], allowed: frozenset[str]) -> frozenset[str]:
    """``requested`` when it is within ``allowed``; ``InvalidScope`` naming the excess."""
    excess = requested - allowed
    if excess:
        raise InvalidScope("Scope not allowed: " + " ".join(sorted(excess)) + ".")
    return requested
