"""Administration (scope ``admin``, which the ``admin`` role grants): users, their roles,
their sessions, and OAuth2 clients (machines and apps that sign people in)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from watchword.domain.errors import InvalidInput
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.routes.schemas import ClientRegistration, UserPatch

router = APIRouter(prefix="/v1/admin", tags=["admin"])

UserId = Path(max_length=64)
admin = require("admin")
MAX_OFFSET = 1_000_000_000  # far past any page; within every database's integer range


@router.get("/users", summary="List accounts")
async def list_users(
    request: Request,
    _: Principal = Depends(admin),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    users = await container_of(request).accounts.list_users(limit=limit, offset=offset)
    return {"users": [u.public() for u in users], "limit": limit, "offset": offset}


@router.patch("/users/{user_id}", summary="Disable or enable an account, or set its roles")
async def patch_user(
    body: UserPatch,
    request: Request,
    user_id: str = UserId,
    principal: Principal = Depends(admin),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    if body.disabled is None and body.roles is None:
        raise InvalidInput("Nothing to change: give 'disabled' and/or 'roles'.")
    accounts = container_of(request).accounts
    user = await accounts.get_user(user_id)
    revoked = 0
    if body.disabled is not None:  # with the roles, if any, in the same transaction
        user, sessions = await accounts.set_disabled(
            user_id, body.disabled, ctx, actor_id=principal.user_id, roles=body.roles
        )
        revoked = len(sessions)
    elif body.roles is not None:
        user = await accounts.set_roles(user_id, body.roles, ctx, actor_id=principal.user_id)
    return {"user": user.public(), "revoked_sessions": revoked}


@router.delete("/users/{user_id}/sessions", summary="Sign a user out everywhere")
async def revoke_user_sessions(
    request: Request,
    user_id: str = UserId,
    principal: Principal = Depends(admin),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    container = container_of(request)
    await container.accounts.get_user(user_id)
    revoked = await container.sessions.revoke_all(
        user_id, RevokeReason.ADMIN, ctx, actor_id=principal.user_id
    )
    return {"status": "revoked", "revoked_sessions": [s.id for s in revoked]}


@router.post("/clients", status_code=201, summary="Register an OAuth2 client or app")
async def create_client(
    body: ClientRegistration,
    request: Request,
    principal: Principal = Depends(admin),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    """The same as ``watchword clients create``: the secret is shown once (none for a public
    client)."""
    app = body.app_registration()
    created = await container_of(request).clients.create(
        name=body.name,
        scopes=body.scopes,
        token_format=body.token_format,
        ctx=ctx,
        actor_id=principal.user_id,
        app=app,
    )
    return {"client": created.client.public(), "client_secret": created.secret or None}


@router.get("/clients", summary="List OAuth2 clients and apps")
async def list_clients(
    request: Request,
    _: Principal = Depends(admin),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    clients = await container_of(request).clients.list_clients(limit=limit, offset=offset)
    return {"clients": [c.public() for c in clients], "limit": limit, "offset": offset}
