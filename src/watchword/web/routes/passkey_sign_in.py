"""Signing in with a passkey: without an email (a discoverable credential picks the account),
or as the second step of a password sign-in.

A completed passkey sign-in answers exactly like a password sign-in in the mode asked for
(cookie or token), and its session records ``amr`` (``hwk`` or ``swk``, with ``mfa``: see
``domain/passkeys.amr_of``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from watchword.domain.errors import WatchwordError
from watchword.domain.principal import Principal
from watchword.domain.users import check_label
from watchword.services.accounts import MAX_DEVICE_NAME
from watchword.services.context import RequestContext
from watchword.web import metrics
from watchword.web.deps import check_origin, container_of, context, require
from watchword.web.routes.auth import NO_STORE, cookie_login
from watchword.web.routes.schemas import DOCUMENTED_LABEL, Body
from watchword.web.routes.tokens import token_login

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class PasskeySignInBody(Body):
    # The PublicKeyCredential as JSON (WebAuthn Level 3 toJSON(): base64url fields).
    credential: dict[str, Any]
    device_name: (
        Annotated[str, Field(max_length=MAX_DEVICE_NAME, json_schema_extra=DOCUMENTED_LABEL)] | None
    ) = None
    mode: Literal["cookie", "token"] = "cookie"


class ChallengeRef(Body):
    challenge: str = Field(max_length=128)


@router.post(
    "/passkey/options",
    summary="Start a passkey sign-in: options for navigator.credentials.get(), no email needed",
)
async def passkey_sign_in_options(
    request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    options = await container_of(request).passkeys.sign_in_options(ctx)
    return JSONResponse(options, headers=NO_STORE)


@router.post("/passkey", summary="Sign in with a passkey: the session, cookie or token mode")
async def passkey_sign_in(
    body: PasskeySignInBody, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    container = container_of(request)
    try:
        if body.mode != "token":
            check_origin(request)  # login CSRF, as for a password sign-in
        check_label(body.device_name, "device_name", MAX_DEVICE_NAME)
        passed = await container.passkeys.sign_in(body.credential, ctx)
        signin = await container.accounts.open_session(
            passed.user,
            ctx,
            kind=body.mode,
            device_name=body.device_name,
            with_secret=body.mode != "token",
            amr=passed.amr,  # written in the session's own transaction
            method="passkey",
        )
        if body.mode == "token":
            response = await token_login(signin, request, ctx)
        else:
            response = await cookie_login(signin, request, ctx)
    except WatchwordError as exc:
        metrics.LOGINS.labels(result=exc.code).inc()
        raise
    metrics.LOGINS.labels(result="succeeded").inc()
    return response


@router.post(
    "/mfa/passkey/options",
    summary="Options for navigator.credentials.get() to answer a sign-in challenge with a passkey",
)
async def second_factor_options(
    body: ChallengeRef, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    options = await container_of(request).mfa.passkey_options(body.challenge, ctx)
    return JSONResponse(options, headers=NO_STORE)


@router.post(
    "/reauth/passkey/options",
    summary="Options for navigator.credentials.get() to step up the current session with a passkey",
)
async def step_up_options(
    request: Request, principal: Principal = Depends(require(enrolling=True))
) -> JSONResponse:
    options = await container_of(request).passkeys.step_up_options(principal)
    return JSONResponse(options, headers=NO_STORE)
