"""Pages for the mailed links and the signed-out recovery forms: verify an address, ask for a
new verification link, ask for a password reset, set a new password.

None of them needs a session, so their forms carry the pre-session token, as /login does.
Each calls the same lifecycle service the JSON API calls. A mailed link's GET only shows a
form: the token is used by the POST, so a mail scanner that fetches links consumes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from watchword.domain.errors import InvalidAccountToken, InvalidInput, RateLimited
from watchword.web.authn import principal_of
from watchword.web.deps import container_of, request_context
from watchword.web.pages.rendering import PageRoute, render
from watchword.web.pages.security import (
    FORM_FIELD,
    check_pre_session_token,
    pre_session_token,
    set_pre_session_cookie,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TOKEN_LIMIT = 256
RESET_SENT = "If an account uses this address, a link to reset its password is on its way."
LINK_SENT = "If an account with an unverified address uses it, a new link is on its way."


def wait_message(exc: RateLimited, what: str = "Too many requests") -> str:
    wait = max(1, exc.retry_after)
    return f"{what}. Try again in {wait} second{'s' * (wait != 1)}."


def _field(form: Any, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _page(request: Request, template: str, values: dict[str, Any], status: int = 200) -> Response:
    """A signed-out page whose forms carry the pre-session token."""
    token, nonce = pre_session_token(request)
    response = render(request, template, {"form_token": token, **values}, status=status)
    set_pre_session_cookie(request, response, nonce)
    return response


def _throttled(response: Response, exc: RateLimited) -> Response:
    response.headers["Retry-After"] = str(max(1, exc.retry_after))
    return response


# -- email verification --------------------------------------------------------------------


@router.get("/verify-email")
async def verify_email_form(request: Request, token: str = Query("", max_length=4096)) -> Response:
    if not token:
        return _page(
            request,
            "verify_email.html",
            {"error": "This link is incomplete: open the whole link from the message."},
            status=400,
        )
    return _page(request, "verify_email.html", {"token": token[:TOKEN_LIMIT]})


@router.post("/verify-email")
async def verify_email_submit(request: Request) -> Response:
    form = await request.form()
    check_pre_session_token(request, _field(form, FORM_FIELD, 512))
    try:
        user = await container_of(request).lifecycle.verify_email(
            _field(form, "token", TOKEN_LIMIT), request_context(request)
        )
    except InvalidAccountToken:
        message = (
            "This link is not valid: it was already used, replaced by a newer one, "
            "or it expired. You can ask for a new one below."
        )
        return _page(request, "verify_email.html", {"error": message, "resend": True}, 400)
    except RateLimited as exc:
        return _throttled(
            _page(request, "verify_email.html", {"error": wait_message(exc)}, 429), exc
        )
    return _page(request, "verify_email.html", {"verified": user.email})


@router.post("/verify-email/new")
async def resend_verification(request: Request) -> Response:
    """A new verification link for a signed-out user: one answer for any address."""
    form = await request.form()
    check_pre_session_token(request, _field(form, FORM_FIELD, 512))
    email = _field(form, "email", 320)
    try:
        await container_of(request).lifecycle.resend_verification_to(
            email, request_context(request)
        )
    except RateLimited as exc:
        values = {"error": wait_message(exc), "resend": True, "email": email}
        return _throttled(_page(request, "verify_email.html", values, 429), exc)
    return _page(request, "verify_email.html", {"link_sent": LINK_SENT}, 202)


# -- password reset ------------------------------------------------------------------------


@router.get("/forgot-password")
async def forgot_password_form(request: Request) -> Response:
    return _page(request, "forgot_password.html", {"email": ""})


@router.post("/forgot-password")
async def forgot_password_submit(request: Request) -> Response:
    form = await request.form()
    check_pre_session_token(request, _field(form, FORM_FIELD, 512))
    email = _field(form, "email", 320)
    try:
        await container_of(request).lifecycle.request_password_reset(
            email, request_context(request)
        )
    except RateLimited as exc:
        values = {"email": email, "error": wait_message(exc)}
        return _throttled(_page(request, "forgot_password.html", values, 429), exc)
    # The same answer, known address or not.
    return _page(request, "forgot_password.html", {"sent": RESET_SENT}, 202)


def _reset_page(
    request: Request, *, token: str, error: str | None = None, status: int = 200, **extra: Any
) -> Response:
    policy = container_of(request).accounts.password_policy
    values = {"token": token, "error": error, "policy": policy, **extra}
    return _page(request, "reset_password.html", values, status)


@router.get("/reset-password")
async def reset_password_form(
    request: Request, token: str = Query("", max_length=4096)
) -> Response:
    if not token:
        # The "was this not you?" link of a notice mail: ask for a reset.
        return RedirectResponse("/forgot-password", status_code=303)
    return _reset_page(request, token=token[:TOKEN_LIMIT])


@router.post("/reset-password")
async def reset_password_submit(request: Request) -> Response:
    form = await request.form()
    check_pre_session_token(request, _field(form, FORM_FIELD, 512))
    token = _field(form, "token", TOKEN_LIMIT)
    new = _field(form, "new_password", 4096)
    if new != _field(form, "new_password_again", 4096):
        return _reset_page(request, token=token, error="The passwords do not match.", status=400)
    try:
        _, revoked = await container_of(request).lifecycle.reset_password(
            token, new, request_context(request)
        )
    except InvalidAccountToken:
        message = (
            "This link is not valid: it was already used, replaced by a newer one, "
            "or it expired. Ask for a new one."
        )
        return _reset_page(request, token="", error=message, status=400, dead_link=True)
    except InvalidInput as exc:
        return _reset_page(request, token=token, error=exc.message, status=400)
    except RateLimited as exc:
        page = _reset_page(request, token=token, error=wait_message(exc), status=429)
        return _throttled(page, exc)
    response = _page(request, "reset_password.html", {"done": True, "revoked": len(revoked)})
    # This browser's own session (if any) ended with all the others.
    if principal_of(request).session_id is not None:
        request.app.state.session_cookie.clear(response)
    return response


__all__ = ["LINK_SENT", "RESET_SENT", "router", "wait_message"]
