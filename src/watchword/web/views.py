"""JSON shapes of domain objects as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watchword.domain.device import describe_user_agent
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session


def session_view(
    session: Session,
    last_seen: datetime,
    *,
    current_id: str | None,
    memo: dict[str, Any] | None = None,
    times_as_text: bool = True,
) -> dict[str, Any]:
    """The session as the API shows it. ``memo`` keeps the parts that never change;
    ``times_as_text=False`` leaves the changing times as datetimes, for orjson to write
    (the same ISO 8601 text, without a Python call per field on the hot path)."""
    static = memo.get("session_static") if memo is not None else None
    if static is None:
        static = {
            "id": session.id,
            "kind": session.kind,
            "device": {**describe_user_agent(session.user_agent), "name": session.device_name},
            "ip": session.ip,
            "created_at": session.created_at.isoformat(),
            "absolute_expires_at": session.expires_at.isoformat(),
        }
        if memo is not None:
            memo["session_static"] = static
    idle_expires_at = session.idle_expires_at(last_seen)
    expires_at = min(session.expires_at, idle_expires_at)
    if not times_as_text:
        return {
            **static,
            "current": session.id == current_id,
            "last_seen_at": last_seen,
            "expires_at": expires_at,
            "idle_expires_at": idle_expires_at,
        }
    return {
        **static,
        "current": session.id == current_id,
        "last_seen_at": last_seen.isoformat(),
        "expires_at": expires_at.isoformat(),
        "idle_expires_at": idle_expires_at.isoformat(),
    }


def authentication_view(principal: Principal) -> dict[str, Any]:
    view = principal.memo.get("authentication")
    if view is None:
        view = principal.memo["authentication"] = _authentication_view(principal)
    return view


def user_view(principal: Principal) -> dict[str, Any] | None:
    if principal.user is None:
        return None
    view = principal.memo.get("user")
    if view is None:
        view = principal.memo["user"] = principal.user.public()
    return view


def _authentication_view(principal: Principal) -> dict[str, Any]:
    return {
        "method": principal.method.value,
        "kind": principal.kind,
        "session_id": principal.session_id,
        "client_id": principal.client_id,
        "scopes": sorted(principal.scopes),
        "roles": sorted(principal.roles),
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
    }
