"""What travels on the bus. Plain dicts on the wire; these build and read them."""

from __future__ import annotations

from typing import Any, Literal

# Control: caches and sockets react to these on every node.
SESSION_REVOKED = "session.revoked"
USER_CHANGED = "user.changed"
KEYS_CHANGED = "keys.changed"
TOKEN_REVOKED = "token.revoked"
CACHE_FLUSH = "cache.flush"

ControlType = Literal[
    "session.revoked", "user.changed", "keys.changed", "token.revoked", "cache.flush"
]


def session_revoked(
    session_id: str, user_id: str, reason: str, expires_at: float
) -> dict[str, Any]:
    """``expires_at`` (epoch seconds): after it no credential of the session can be valid."""
    return {
        "type": SESSION_REVOKED,
        "session_id": session_id,
        "user_id": user_id,
        "reason": reason,
        "expires_at": expires_at,
    }


def user_changed(user_id: str, *, disabled: bool, deleted: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"type": USER_CHANGED, "user_id": user_id, "disabled": disabled}
    if deleted:
        message["deleted"] = True
    return message
