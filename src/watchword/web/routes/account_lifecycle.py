"""An account's life by mail: verify the address, change it, reset a forgotten password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from watchword.domain.errors import NotAuthenticated, NotFound
from watchword.domain.principal import Principal
from watchword.services.context import RequestContext
from watchword.web.authn import principal_of
from watchword.web.deps import check_origin, container_of, context, require
from watchword.web.routes.schemas import Body
from watchword.web.stepup import require_recent_auth

router = APIRouter(tags=["account lifecycle"])

NO_STORE = {"Cache-Control": "no-store"}
RESET_ACCEPTED = {
    "status": "accepted",
    "message": "If an account uses this address, a link to reset its password is on its way.",
}


class TokenBody(Body):
    token: str = Field(max_length=256)


class EmailChange(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)


class ResetRequest(Body):
    email: str = Field(max_length=320)


class ResetConfirm(Body):
    token: str = Field(max_length=256)
    new_password: str = Field(max_length=4096)


@router.post(
    "/v1/me/email/verify",
    summary="Verify an email address with the token from the mailed link (no session needed)",
)
async def verify_email(
    body: TokenBody, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    user = await container_of(request).lifecycle.verify_email(body.token, ctx)
    return JSONResponse({"status": "verified", "user": user.public()}, headers=NO_STORE)


class VerificationRequest(Body):
    email: str = Field(max_length=320)


VERIFICATION_ACCEPTED = {
    "status": "accepted",
    "message": "If an account with an unverified address uses it, a new link is on its way.",
}


@router.post(
    "/v1/me/email/verification",
    status_code=202,
    summary="Send a new verification link (throttled); without a session, give the address",
)
async def resend_verification(
    request: Request,
    body: VerificationRequest | None = None,
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    container = container_of(request)
    if principal_of(request).is_authenticated:
        principal = await require(enrolling=True)(request)
        if principal.user_id is None:
            raise NotFound("Only users have email addresses.")
        await container.lifecycle.resend_verification(principal.user_id, ctx)
        return JSONResponse({"status": "sent"}, status_code=202, headers=NO_STORE)
    # Signed out (sign-in may be waiting for verification): the same answer for any address.
    if body is None:
        raise NotAuthenticated("Sign in, or give the account's email address.")
    check_origin(request)
    await container.lifecycle.resend_verification_to(body.email, ctx)
    return JSONResponse(VERIFICATION_ACCEPTED, status_code=202, headers=NO_STORE)


@router.post(
    "/v1/me/email",
    status_code=202,
    summary="Change the email address: it takes effect once the new address is verified",
)
async def change_email(
    body: EmailChange,
    request: Request,
    principal: Principal = Depends(require_recent_auth()),
    ctx: RequestContext = Depends(context),
) -> dict[str, Any]:
    if principal.user_id is None:
        raise NotFound("Only users have email addresses.")
    await container_of(request).lifecycle.request_email_change(
        principal.user_id, new_email=body.email, password=body.password, ctx=ctx
    )
    return {"status": "verification_sent"}


@router.post(
    "/v1/auth/password-reset",
    status_code=202,
    summary="Mail a password-reset link; the same answer whether or not the account exists",
)
async def request_password_reset(
    body: ResetRequest, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    check_origin(request)
    await container_of(request).lifecycle.request_password_reset(body.email, ctx)
    return JSONResponse(RESET_ACCEPTED, status_code=202, headers=NO_STORE)


@router.post(
    "/v1/auth/password-reset/confirm",
    summary="Set a new password with a reset token: every session of the account ends",
)
async def confirm_password_reset(
    body: ResetConfirm, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    check_origin(request)
    _, revoked = await container_of(request).lifecycle.reset_password(
        body.token, body.new_password, ctx
    )
    return JSONResponse(
        {"status": "password_reset", "revoked_sessions": len(revoked)}, headers=NO_STORE
    )


class Reauth(Body):
    # The password (with ``code`` when TOTP is on), or a passkey's response (``credential``,
    # to the options of POST /v1/auth/reauth/passkey/options) instead of both.
    password: str | None = Field(default=None, max_length=4096)
    # A TOTP or recovery code: needed when TOTP is on.
    code: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None


@router.post(
    "/v1/auth/reauth",
    summary="Confirm the password: the current session counts as freshly signed in (step-up)",
)
async def reauth(
    body: Reauth,
    request: Request,
    principal: Principal = Depends(require(enrolling=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    auth_time, amr = await container_of(request).step_up.reauth(
        principal, body.password, ctx, body.code, credential=body.credential
    )
    return JSONResponse(
        {"status": "reauthenticated", "auth_time": int(auth_time.timestamp()), "amr": amr},
        headers=NO_STORE,
    )
