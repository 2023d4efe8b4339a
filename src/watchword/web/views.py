"""JSON shapes of domain objects as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watchword.domain.device import describe_user_agent
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session


def session_view(
    session: Session, last_seen: datetime, *, current_id: str | None
) -> dict[str, Any]:
    """The session as the API shows it."""
    times = session_times(session, last_seen)
    return {
        **session_static_view(session),
        "current": session.id == current_id,
        **{name: value.isoformat() for name, value in times.items()},
    }


def session_static_view(session: Session) -> dict[str, Any]:
    """The parts of ``session_view`` that never change for a session."""
    return {
        "id": session.id,
        "kind": session.kind,
        "device": {**describe_user_agent(session.user_agent), "name": session.device_name},
        "ip": session.ip,
        "created_at": session.created_at.isoformat(),
        "absolute_expires_at": session.expires_at.isoformat(),
    }


def session_times(session: Session, last_seen: datetime) -> dict[str, datetime]:
    """The parts of ``session_view`` that move with use, last in its order."""
    idle_expires_at = session.idle_expires_at(last_seen)
    return {
        "last_seen_at": last_seen,
        "expires_at": min(session.expires_at, idle_expires_at),
        "idle_expires_at": idle_expires_at,
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
