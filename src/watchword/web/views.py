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
    device = describe_user_agent(session.user_agent)
    return {
        "id": session.id,
        "current": session.id == current_id,
        "kind": session.kind,
        "device": {**device, "name": session.device_name},
        "ip": session.ip,
        "created_at": session.created_at.isoformat(),
        "last_seen_at": last_seen.isoformat(),
        "expires_at": session.effective_expires_at(last_seen).isoformat(),
        "absolute_expires_at": session.expires_at.isoformat(),
        "idle_expires_at": session.idle_expires_at(last_seen).isoformat(),
    }


def authentication_view(principal: Principal) -> dict[str, Any]:
    return {
        "method": principal.method.value,
        "kind": principal.kind,
        "session_id": principal.session_id,
        "client_id": principal.client_id,
        "scopes": sorted(principal.scopes),
        "roles": sorted(principal.roles),
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
    }
