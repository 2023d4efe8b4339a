"""The account page's second factors: TOTP enrolment (QR code, then the confirm step that
shows the recovery codes once), removal, and passkey removal. Adding a passkey needs the
browser's WebAuthn API: ``static/passkeys.js`` calls the JSON API for it.

The same services and the same rules as ``/v1/me/mfa`` and ``/v1/me/passkeys``: a recent
sign-in for every change, and open to a user whose role needs a second factor and who has
none yet (enrolling is the one thing such a user may do).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from watchword.domain.errors import (
    Conflict,
    InvalidCredentials,
    NotFound,
    RateLimited,
    ReauthRequired,
)
from watchword.domain.principal import Principal
from watchword.web.deps import container_of, request_context
from watchword.web.pages.account import account_page, enrolment_reader
from watchword.web.pages.rendering import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FACTORS = "/account#factors"


async def _recent(request: Request, principal: Principal) -> Response | None:
    """The page asking for the password again when the sign-in is too old, else None."""
    try:
        await container_of(request).step_up.check(principal)
    except ReauthRequired:
        return await account_page(request, principal, status=401, reauth_needed=True)
    return None


@router.post("/account/mfa/totp")
async def start_totp(
    request: Request, principal: Principal = Depends(enrolment_reader)
) -> Response:
    if (stale := await _recent(request, principal)) is not None:
        return stale
    try:
        enrolment = await container_of(request).mfa.enroll(principal, request_context(request))
    except Conflict:
        return RedirectResponse(FACTORS, status_code=303)
    # The secret is in this answer only (the page is no-store), as in the API's.
    return await account_page(request, principal, totp_enrolment=enrolment)


@router.post("/account/mfa/totp/confirm")
async def confirm_totp(
    request: Request, principal: Principal = Depends(enrolment_reader)
) -> Response:
    form = await request.form()
    code = form.get("code")
    if (stale := await _recent(request, principal)) is not None:
        return stale
    try:
        codes = await container_of(request).mfa.confirm(
            principal, code if isinstance(code, str) else "", request_context(request)
        )
    except (InvalidCredentials, RateLimited, NotFound) as exc:
        message = exc.message
        if isinstance(exc, RateLimited):
            message = f"Too many attempts. Try again in {max(1, exc.retry_after)} seconds."
        return await account_page(request, principal, status=400, factor_error=message)
    except Conflict:
        return RedirectResponse(FACTORS, status_code=303)
    # Shown once: they are stored hashed and never again readable.
    return await account_page(request, principal, recovery_codes=codes)


@router.post("/account/mfa/totp/remove")
async def remove_totp(
    request: Request, principal: Principal = Depends(enrolment_reader)
) -> Response:
    if (stale := await _recent(request, principal)) is not None:
        return stale
    try:
        await container_of(request).mfa.remove(principal, request_context(request))
    except NotFound:
        pass
    return RedirectResponse("/account?done=totp-removed#factors", status_code=303)


@router.post("/account/passkeys/{passkey_id}/remove")
async def remove_passkey(
    request: Request, passkey_id: str, principal: Principal = Depends(enrolment_reader)
) -> Response:
    if (stale := await _recent(request, principal)) is not None:
        return stale
    try:
        await container_of(request).passkeys.remove(
            principal, passkey_id[:64], request_context(request)
        )
    except NotFound:
        pass
    return RedirectResponse("/account?done=passkey-removed#factors", status_code=303)
