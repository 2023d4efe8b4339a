"""My API keys: create (the full key is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from watchword.domain.errors import NotFound
from watchword.domain.principal import Principal
from watchword.domain.users import User
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.routes.schemas import KeyName, Scopes
from watchword.web.stepup import require_recent_auth

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

KeyId = Path(max_length=64)
NO_STORE = {"Cache-Control": "no-store"}


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName
    scopes: Scopes = Field(description="Scopes, a subset of your own")
    expires_in: int | None = Field(default=None, description="Lifetime in seconds")


async def owner_of(request: Request, principal: Principal) -> User:
    if principal.kind != "user" or principal.user_id is None:
        raise NotFound("Only users have keys.")
    if principal.user is not None:
        return principal.user
    return await container_of(request).accounts.get_user(principal.user_id)


@router.post("", status_code=201, summary="Create an API key (the key is shown only now)")
async def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    principal: Principal = Depends(require_recent_auth("api-keys")),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    owner = await owner_of(request, principal)
    created = await container_of(request).api_keys.create(
        owner,
        name=body.name,
        scopes=body.scopes,
        grantable=principal.scopes,
        expires_in=body.expires_in,
        ctx=ctx,
        actor_id=principal.user_id,
    )
    return JSONResponse(
        {"api_key": created.key.public(), "key": created.secret}, status_code=201, headers=NO_STORE
    )


@router.get("", summary="My API keys (never the secrets)")
async def list_api_keys(
    request: Request, principal: Principal = Depends(require("api-keys"))
) -> dict[str, Any]:
    owner = await owner_of(request, principal)
    keys = await container_of(request).api_keys.list_for_user(owner.id)
    return {"api_keys": [key.public(used) for key, used in keys]}


@router.delete("/{key_id}", summary="Revoke one of my API keys, at once")
async def revoke_api_key(
    request: Request,
    key_id: str = KeyId,
    principal: Principal = Depends(require("api-keys")),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    owner = await owner_of(request, principal)
    revoked = await container_of(request).api_keys.revoke(
        key_id, ctx, owner_id=owner.id, actor_id=principal.user_id
    )
    return {"status": "revoked", "id": revoked.id}
