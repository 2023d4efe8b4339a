"""My request-signing keys (RFC 9421): an HMAC secret shown once, or a registered Ed25519
public key."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from watchword.domain.principal import Principal
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.routes.apikeys import NO_STORE, owner_of
from watchword.web.routes.schemas import KeyName, Scopes

router = APIRouter(prefix="/v1/signing-keys", tags=["signing-keys"])

KeyId = Path(max_length=64)


class SigningKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName
    algorithm: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    scopes: Scopes = Field(description="Scopes, a subset of your own")
    public_key: str | None = Field(
        default=None, max_length=4096, description="ed25519 only: PEM or base64url raw key"
    )


@router.post("", status_code=201, summary="Register a signing key (an HMAC secret is shown once)")
async def create_signing_key(
    body: SigningKeyCreate,
    request: Request,
    principal: Principal = Depends(require("signing-keys")),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    owner = await owner_of(request, principal)
    created = await container_of(request).signing.create(
        owner,
        name=body.name,
        algorithm=body.algorithm,
        scopes=body.scopes,
        grantable=principal.scopes,
        public_key=body.public_key,
        ctx=ctx,
        actor_id=principal.user_id,
    )
    return JSONResponse(
        {"signing_key": created.key.public(), "secret": created.secret},
        status_code=201,
        headers=NO_STORE,
    )


@router.get("", summary="My signing keys (never the secrets)")
async def list_signing_keys(
    request: Request, principal: Principal = Depends(require("signing-keys"))
) -> dict[str, Any]:
    owner = await owner_of(request, principal)
    keys = await container_of(request).signing.list_for_user(owner.id)
    return {"signing_keys": [key.public(used) for key, used in keys]}


@router.delete("/{key_id}", summary="Revoke one of my signing keys, at once")
async def revoke_signing_key(
    request: Request,
    key_id: str = KeyId,
    principal: Principal = Depends(require("signing-keys")),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    owner = await owner_of(request, principal)
    revoked = await container_of(request).signing.revoke(
        key_id, ctx, owner_id=owner.id, actor_id=principal.user_id
    )
    return {"status": "revoked", "id": revoked.id}
