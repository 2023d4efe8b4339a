"""Sign-in and sign-out."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from watchword.domain.errors import NotFound, WatchwordError
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.sessions import RevokeReason, csrf_token_for
from watchword.services.accounts import SecondFactorNeeded, SignIn
from watchword.services.context import RequestContext
from watchword.web import metrics
from watchword.web.authn import principal_of
from watchword.web.deps import check_origin, container_of, context, require
from watchword.web.routes.schemas import Body, Login
from watchword.web.routes.tokens import token_login
from watchword.web.views import session_view

router = APIRouter(prefix="/v1/auth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post("/login", summary="Sign in: starts a session and sets the session cookie")
async def login(
    body: Login, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    container = container_of(request)
    try:
        if body.mode != "token":
            check_origin(request)  # login CSRF: a foreign page must not sign the browser in
        result = await container.accounts.login(
            email=body.email,
            password=body.password,
            device_name=body.device_name,
            ctx=ctx,
            kind=body.mode,
            with_secret=body.mode != "token",
        )
        if isinstance(result, SecondFactorNeeded):
            metrics.LOGINS.labels(result="mfa_required").inc()
            return JSONResponse(
                {
                    "mfa_required": True,
                    "challenge": result.challenge,
                    "methods": list(result.methods),
                },
                headers=NO_STORE,
            )
        if body.mode == "token":  # a token session, no cookie
            response = await token_login(result, request, ctx)
        else:
            response = await cookie_login(result, request, ctx)
    except WatchwordError as exc:
        metrics.LOGINS.labels(result=exc.code).inc()
        raise
    metrics.LOGINS.labels(result="succeeded").inc()
    return response


class MfaAnswer(Body):
    challenge: str = Field(max_length=128)
    # One of the two: a TOTP or recovery code, or a passkey's response (PublicKeyCredential
    # JSON) to the options of POST /v1/auth/mfa/passkey/options.
    code: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None


@router.post(
    "/mfa",
    summary="Complete a sign-in with a TOTP or recovery code, or a passkey: the session, "
    "in the mode of login",
)
async def complete_mfa(
    body: MfaAnswer, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    check_origin(request)  # a browser's completion is a login: the same CSRF rule
    try:
        signin, mode = await finish_second_factor(
            request, body.challenge, body.code, ctx, credential=body.credential
        )
        if mode == "token":
            response = await token_login(signin, request, ctx)
        else:
            response = await cookie_login(signin, request, ctx)
    except WatchwordError as exc:
        metrics.LOGINS.labels(result=exc.code).inc()
        raise
    metrics.LOGINS.labels(result="succeeded").inc()
    return response


async def finish_second_factor(
    request: Request,
    challenge: str,
    code: str | None,
    ctx: RequestContext,
    *,
    credential: dict[str, Any] | None = None,
) -> tuple[SignIn, str]:
    """The second step of a sign-in (the API's and the sign-in page's): the challenge and a
    TOTP or recovery code (or a passkey's response) in, the new session and the mode asked
    for at login out."""
    container = container_of(request)
    passed = await container.mfa.complete(challenge, code, ctx, credential)
    signin = await container.accounts.open_session(
        passed.user,
        ctx,
        kind=passed.challenge.mode,
        device_name=passed.challenge.device_name,
        with_secret=passed.challenge.mode != "token",
        amr=passed.amr,  # written in the session's own transaction
        second_factor=passed.method,
    )
    return signin, passed.challenge.mode


async def cookie_login(signin: SignIn, request: Request, ctx: RequestContext) -> JSONResponse:
    container = container_of(request)
    session = signin.session
    response = JSONResponse(
        {
            "user": signin.user.public(),
            "session": session_view(session, session.last_seen_at, current_id=session.id),
            "csrf_token": csrf_token_for(session.id, container.csrf_key),
        },
        headers=NO_STORE,
    )
    assert signin.new.secret is not None
    request.app.state.session_cookie.set(response, signin.new.secret)
    # Rotation at sign-in: the browser's previous session (if its cookie was still valid)
    # ends now, rather than lingering until it times out beside the new one.
    previous = principal_of(request)
    if previous.method is AuthMethod.COOKIE and previous.session_id not in (None, session.id):
        with contextlib.suppress(NotFound):
            await container.sessions.revoke(previous.session_id, RevokeReason.REPLACED, ctx)
    return response


@router.post("/logout", summary="End the current session everywhere and clear the cookie")
async def logout(
    request: Request,
    principal: Principal = Depends(require(enrolling=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    container = container_of(request)
    if principal.session_id is not None:
        await container.sessions.revoke(
            principal.session_id, RevokeReason.LOGOUT, ctx, owner_id=principal.user_id
        )
    # The browser drops every cookie of this origin too, not only the one cleared here.
    headers = {**NO_STORE, "Clear-Site-Data": '"cookies"'}
    response = JSONResponse({"status": "signed_out"}, headers=headers)
    request.app.state.session_cookie.clear(response)
    return response
