"""Second factors of the signed-in user: TOTP enrolment and removal, recovery codes.

Every change needs a person's session with a recent sign-in (``require_recent_auth``): an API
key or a client cannot add or remove a user's factors, nor can a stolen stale cookie.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from watchword.domain.errors import Forbidden
from watchword.domain.principal import Principal
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.routes.schemas import Body
from watchword.web.stepup import require_recent_auth

router = APIRouter(prefix="/v1/me/mfa", tags=["second factors"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TotpCode(Body):
    code: str = Field(max_length=16)


def _person(principal: Principal) -> Principal:
    if principal.user_id is None or principal.session_id is None:
        raise Forbidden("Second factors are changed from the user's own signed-in session.")
    return principal


@router.get("", summary="Which second factors are on: TOTP, recovery codes left, passkeys")
async def mfa_status(
    request: Request, principal: Principal = Depends(require(enrolling=True))
) -> Any:
    if principal.user_id is None:
        return {"totp": False, "recovery_codes_left": 0, "passkeys": 0}
    return await container_of(request).mfa.status(principal.user_id)


@router.post(
    "/totp",
    summary="Start TOTP enrolment: a new secret, its otpauth:// URI and QR code (SVG)",
)
async def enroll_totp(
    request: Request,
    principal: Principal = Depends(require_recent_auth(enrolling=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    enrolment = await container_of(request).mfa.enroll(_person(principal), ctx)
    return JSONResponse(
        {
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
            "qr_svg": enrolment.qr_svg,
        },
        headers=NO_STORE,
    )


@router.post(
    "/totp/confirm",
    summary="Turn TOTP on with a code from the app; answers the recovery codes, shown once",
)
async def confirm_totp(
    body: TotpCode,
    request: Request,
    principal: Principal = Depends(require_recent_auth(enrolling=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    codes = await container_of(request).mfa.confirm(_person(principal), body.code, ctx)
    return JSONResponse({"recovery_codes": codes}, headers=NO_STORE)


@router.delete("/totp", summary="Turn TOTP off (and drop the recovery codes)")
async def remove_totp(
    request: Request,
    principal: Principal = Depends(require_recent_auth()),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    await container_of(request).mfa.remove(_person(principal), ctx)
    return JSONResponse({"status": "removed"}, headers=NO_STORE)


@router.post(
    "/recovery-codes",
    summary="A new set of recovery codes, shown once; the previous set stops working",
)
async def replace_recovery_codes(
    request: Request,
    principal: Principal = Depends(require_recent_auth()),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    codes = await container_of(request).mfa.new_recovery_codes(_person(principal), ctx)
    return JSONResponse({"recovery_codes": codes}, headers=NO_STORE)
