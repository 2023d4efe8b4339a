"""My devices: list them, sign one out, or all others."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from watchword.domain.errors import NotFound
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.services.context import RequestContext
from watchword.services.stepup import claims_of
from watchword.web.deps import container_of, context, require
from watchword.web.views import session_view

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

SessionId = Path(max_length=64)


def _owner(principal: Principal) -> str:
    if principal.user_id is None:
        raise NotFound("Only users have sessions.")
    return principal.user_id


@router.get("", summary="My live sessions, newest first")
async def list_sessions(
    request: Request, principal: Principal = Depends(require("sessions"))
) -> dict[str, Any]:
    container = container_of(request)
    live = await container.sessions.list_live(_owner(principal))
    views = []
    for session, seen in live:
        info = await container.step_up.session_info(session.id, session)
        views.append(
            {
                **session_view(session, seen, current_id=principal.session_id),
                **(claims_of(info) if info is not None else {}),
            }
        )
    return {"sessions": views}


@router.delete("/{session_id}", summary="Sign out one of my sessions")
async def revoke_session(
    request: Request,
    session_id: str = SessionId,
    principal: Principal = Depends(require("sessions")),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    revoked = await container_of(request).sessions.revoke(
        session_id,
        RevokeReason.REVOKED,
        ctx,
        owner_id=_owner(principal),
        actor_id=principal.user_id,
    )
    return {"status": "revoked", "session_id": revoked.id}


@router.post("/revoke-others", summary="Sign out every session but this one")
async def revoke_others(
    request: Request,
    principal: Principal = Depends(require("sessions")),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    revoked = await container_of(request).sessions.revoke_all(
        _owner(principal),
        RevokeReason.REVOKED_OTHERS,
        ctx,
        except_session_id=principal.session_id,
        actor_id=principal.user_id,
    )
    return {"status": "revoked", "revoked_sessions": [s.id for s in revoked]}
