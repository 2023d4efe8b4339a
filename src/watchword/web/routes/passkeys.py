"""The signed-in user's passkeys: register (options, then the authenticator's response),
list, rename, remove.

Adding and removing a passkey changes how the account signs in: both need a person's session
with a recent sign-in (``require_recent_auth``), like every other factor change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from watchword.domain.errors import Forbidden
from watchword.domain.principal import Principal
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.routes.schemas import Body, KeyName
from watchword.web.stepup import require_recent_auth

router = APIRouter(prefix="/v1/me/passkeys", tags=["second factors"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A passkey's name is shown in lists like a key's: printable, at most 100 characters.
Name = KeyName


class NewPasskey(Body):
    # The PublicKeyCredential as JSON (WebAuthn Level 3 toJSON(): base64url fields).
    credential: dict[str, Any]
    name: Name | None = None


class PasskeyName(Body):
    name: Name


def _person(principal: Principal) -> Principal:
    if principal.user_id is None or principal.session_id is None:
        raise Forbidden("Passkeys are changed from the user's own signed-in session.")
    return principal


@router.get("", summary="The user's passkeys: name, created, last used")
async def list_passkeys(
    request: Request, principal: Principal = Depends(require(enrolling=True))
) -> Any:
    if principal.user_id is None:
        return {"passkeys": []}
    passkeys = await container_of(request).passkeys.list_for(principal.user_id)
    return {"passkeys": [p.public() for p in passkeys]}


@router.post(
    "/options",
    summary="Start registering a passkey: options for navigator.credentials.create()",
)
async def registration_options(
    request: Request, principal: Principal = Depends(require_recent_auth(enrolling=True))
) -> JSONResponse:
    options = await container_of(request).passkeys.registration_options(_person(principal))
    return JSONResponse(options, headers=NO_STORE)


@router.post("", status_code=201, summary="Register a passkey with the authenticator's response")
async def register_passkey(
    body: NewPasskey,
    request: Request,
    principal: Principal = Depends(require_recent_auth(enrolling=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    passkey = await container_of(request).passkeys.register(
        _person(principal), body.credential, body.name, ctx
    )
    return JSONResponse({"passkey": passkey.public()}, status_code=201, headers=NO_STORE)


@router.patch("/{passkey_id}", summary="Rename a passkey")
async def rename_passkey(
    passkey_id: str,
    body: PasskeyName,
    request: Request,
    principal: Principal = Depends(require(session=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    passkey = await container_of(request).passkeys.rename(principal, passkey_id, body.name, ctx)
    return JSONResponse({"passkey": passkey.public()}, headers=NO_STORE)


@router.delete("/{passkey_id}", summary="Remove a passkey: it can no longer sign in")
async def remove_passkey(
    passkey_id: str,
    request: Request,
    principal: Principal = Depends(require_recent_auth()),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    await container_of(request).passkeys.remove(_person(principal), passkey_id, ctx)
    return JSONResponse({"status": "removed"}, headers=NO_STORE)
