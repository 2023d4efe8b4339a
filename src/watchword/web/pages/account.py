"""Sign-in, sign-up, sign-out and the account page: the same services the API calls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from watchword.domain.errors import (
    AccountDisabled,
    Conflict,
    EmailNotVerified,
    InvalidCredentials,
    InvalidInput,
    InvalidMfaChallenge,
    MfaCodeRequired,
    NotFound,
    RateLimited,
    ReauthRequired,
    StoreUnavailable,
    WatchwordError,
)
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.web.authn import principal_of
from watchword.web.deps import container_of, request_context, require
from watchword.web.pages.rendering import PageRoute, page_for_error, render
from watchword.web.pages.security import (
    FORM_FIELD,
    check_pre_session_token,
    pre_session_token,
    set_pre_session_cookie,
)
from watchword.web.pages.signin import (
    DEFAULT_NEXT,
    SecondFactorStep,
    finish_sign_in,
    safe_next,
    sign_in,
)
from watchword.web.realtime.routes import realtime_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

EVENTS_PER_PAGE = 20
KEY_LIFETIMES = {"": None, "7d": 7 * 86_400, "30d": 30 * 86_400, "90d": 90 * 86_400}
account_reader = require("profile")
# The account page, step-up and sign-out stay open to a user whose role needs a second factor
# and who has none yet: the page then shows only what it takes to enrol one.
enrolment_reader = require("profile", enrolling=True)
device_manager = require("sessions")
key_manager = require("api-keys")


def _text(form: FormData, name: str, limit: int = 1024) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _signed_in(request: Request) -> bool:
    principal = principal_of(request)
    return principal.is_authenticated and principal.user_id is not None


@router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse("/account" if _signed_in(request) else "/login", status_code=303)


# -- sign-in -----------------------------------------------------------------------------


def _login_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    unverified: bool = False,
) -> Response:
    token, nonce = pre_session_token(request)
    response = render(
        request,
        "login.html",
        {
            "form_token": token,
            "next": next_path,
            "email": email,
            "error": error,
            "unverified": unverified,
            "open_registration": container_of(request).accounts.open_registration,
        },
        status=status,
    )
    set_pre_session_cookie(request, response, nonce)
    return response


@router.get("/login")
async def login_form(
    request: Request,
    next: str | None = Query(None),
    login_hint: str | None = Query(None, max_length=320),
    again: str | None = Query(None, max_length=1),
) -> Response:
    target = safe_next(next, "")
    if _signed_in(request) and not again:
        return RedirectResponse(target or DEFAULT_NEXT, status_code=303)
    return _login_page(request, next_path=target, email=login_hint or "")


@router.post("/login")
async def login_submit(request: Request) -> Response:
    form = await request.form()
    target = safe_next(_text(form, "next", 4096) or request.query_params.get("next"), "")
    check_pre_session_token(request, _text(form, FORM_FIELD))
    email = _text(form, "email", 320)
    try:
        _, response = await sign_in(
            request,
            email=email,
            password=_text(form, "password", 4096),
            device_name=_text(form, "device_name", 200).strip() or None,
            next_path=target,
        )
    except RateLimited as exc:
        wait = max(1, exc.retry_after)
        message = f"Too many sign-in attempts. Try again in {wait} second{'s' * (wait != 1)}."
        page = _login_page(request, next_path=target, email=email, error=message, status=429)
        page.headers["Retry-After"] = str(wait)
        return page
    except EmailNotVerified:
        message = (
            "Your email address is not verified yet. Follow the link we sent you, "
            "or ask for a new one."
        )
        return _login_page(
            request, next_path=target, email=email, error=message, status=403, unverified=True
        )
    except (InvalidCredentials, AccountDisabled) as exc:
        status = 403 if isinstance(exc, AccountDisabled) else 401
        return _login_page(request, next_path=target, email=email, error=exc.message, status=status)
    except InvalidInput as exc:
        return _login_page(request, next_path=target, email=email, error=exc.message, status=400)
    except SecondFactorStep as step:
        return _second_factor_page(
            request, challenge=step.challenge, next_path=target, methods=step.methods
        )
    return response


def _second_factor_page(
    request: Request,
    *,
    challenge: str,
    next_path: str,
    error: str | None = None,
    status: int = 200,
    methods: tuple[str, ...] = ("totp", "recovery_code"),
) -> Response:
    token, nonce = pre_session_token(request)
    response = render(
        request,
        "login_code.html",
        {
            "form_token": token,
            "next": next_path,
            "challenge": challenge,
            "error": error,
            "methods": methods,
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    set_pre_session_cookie(request, response, nonce)
    return response


@router.post("/login/code")
async def second_factor_submit(request: Request) -> Response:
    """The second step of a sign-in: a TOTP or recovery code for the challenge."""
    form = await request.form()
    target = safe_next(_text(form, "next", 4096), "")
    check_pre_session_token(request, _text(form, FORM_FIELD))
    challenge = _text(form, "challenge", 200)
    try:
        return await finish_sign_in(
            request,
            challenge=challenge,
            code=_text(form, "code", 100).replace(" ", ""),
            next_path=target,
        )
    except RateLimited as exc:
        wait = max(1, exc.retry_after)
        message = f"Too many attempts. Try again in {wait} second{'s' * (wait != 1)}."
        return _second_factor_page(
            request, challenge=challenge, next_path=target, error=message, status=429
        )
    except InvalidMfaChallenge as exc:  # expired or used: sign in again
        return _login_page(request, next_path=target, error=exc.message, status=401)
    except InvalidCredentials as exc:
        return _second_factor_page(
            request, challenge=challenge, next_path=target, error=exc.message, status=401
        )
    except (InvalidInput, AccountDisabled) as exc:
        return _login_page(request, next_path=target, error=exc.message, status=400)


@router.get("/signup")
async def signup_form(request: Request) -> Response:
    if not container_of(request).accounts.open_registration:
        raise NotFound("Registration is closed on this server.")
    return _signup_page(request)


def _signup_page(
    request: Request, *, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    token, nonce = pre_session_token(request)
    policy = container_of(request).accounts.password_policy
    response = render(
        request,
        "signup.html",
        {"form_token": token, "email": email, "error": error, "policy": policy},
        status=status,
    )
    set_pre_session_cookie(request, response, nonce)
    return response


@router.post("/signup")
async def signup_submit(request: Request) -> Response:
    accounts = container_of(request).accounts
    if not accounts.open_registration:
        raise NotFound("Registration is closed on this server.")
    form = await request.form()
    check_pre_session_token(request, _text(form, FORM_FIELD))
    email = _text(form, "email", 320)
    password = _text(form, "password", 4096)
    if password != _text(form, "password_again", 4096):
        return _signup_page(request, email=email, error="The passwords do not match.", status=400)
    try:
        await accounts.register(email=email, password=password, ctx=request_context(request))
        _, response = await sign_in(request, email=email, password=password)
    except InvalidInput as exc:
        return _signup_page(request, email=email, error=exc.message, status=400)
    except WatchwordError as exc:
        if isinstance(exc, StoreUnavailable):
            raise
        return _signup_page(request, email=email, error=exc.message, status=400)
    return response


@router.post("/logout")
async def logout(
    request: Request, principal: Principal = Depends(require(enrolling=True))
) -> Response:
    if principal.session_id is not None:
        await container_of(request).sessions.revoke(
            principal.session_id, RevokeReason.LOGOUT, request_context(request)
        )
    response = RedirectResponse("/login", status_code=303)
    request.app.state.session_cookie.clear(response)
    return response


# -- the account page ----------------------------------------------------------------------


async def online_sessions(request: Request, user_id: str) -> set[str]:
    """Sessions of ``user_id`` with a live realtime connection (empty if presence is down)."""
    try:
        entries = await realtime_of(request).node.presence.list(user_id)
    except StoreUnavailable:
        return set()
    return {entry.session_id for entry in entries if entry.session_id}


async def _devices(request: Request, principal: Principal) -> dict[str, Any]:
    assert principal.user_id is not None
    live = await container_of(request).sessions.list_live(principal.user_id)
    return {
        "sessions": [(s, seen) for s, seen in live],
        "current_id": principal.session_id,
        "online": await online_sessions(request, principal.user_id),
    }


async def _factors(request: Request, user_id: str) -> dict[str, Any]:
    container = container_of(request)
    status = await container.mfa.status(user_id)
    return {
        "totp_on": status["totp"],
        "recovery_codes_left": status["recovery_codes_left"],
        "passkeys": await container.passkeys.list_for(user_id),
    }


def enrolment_required(request: Request, principal: Principal, factors: dict[str, Any]) -> bool:
    roles = container_of(request).settings.mfa_required_roles
    has_factor = factors["totp_on"] or factors["passkeys"]
    return bool(roles) and bool(principal.roles.intersection(roles)) and not has_factor


async def _account_values(
    request: Request, principal: Principal, before: int | None
) -> dict[str, Any]:
    container = container_of(request)
    assert principal.user_id is not None
    user = principal.user or await container.accounts.get_user(principal.user_id)
    factors = await _factors(request, user.id)
    if enrolment_required(request, principal, factors):
        # Only enrolment is open: nothing else of the account is shown until then.
        return {
            "user": user,
            **factors,
            "enrolment_required": True,
            "policy": container.accounts.password_policy,
        }
    events = await container.accounts.events_for(
        principal.user_id, limit=EVENTS_PER_PAGE + 1, before_id=before
    )
    older = events[EVENTS_PER_PAGE - 1].id if len(events) > EVENTS_PER_PAGE else None
    keys = await container.api_keys.list_for_user(user.id) if "api-keys" in principal.scopes else []
    apps = (
        await container.app_tokens.connected_apps(user.id, container.clients.get)
        if "sessions" in principal.scopes
        else []
    )
    return {
        "user": user,
        **factors,
        **await _devices(request, principal),
        "events": events[:EVENTS_PER_PAGE],
        "events_older": older,
        "events_before": before,
        "api_keys": keys,
        "connected_apps": apps,
        "grantable": sorted(principal.scopes),
        "lifetimes": list(KEY_LIFETIMES),
        "policy": container.accounts.password_policy,
    }


async def account_page(
    request: Request,
    principal: Principal,
    *,
    before: int | None = None,
    status: int = 200,
    **extra: Any,
) -> Response:
    values = await _account_values(request, principal, before)
    values.update(extra)
    return render(request, "account.html", values, status=status)


@router.get("/account")
async def account(
    request: Request,
    before: int | None = Query(None, ge=1),
    principal: Principal = Depends(enrolment_reader),
) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return await account_page(request, principal, before=before, notice=notice)


NOTICES = {
    "password": "Your password was changed. Your other devices were signed out.",
    "verification": "A verification link is on its way to your email address.",
    "reauth": "Thank you, your password is confirmed. You can go on now.",
    "reauth-passkey": "Thank you, your passkey confirmed it is you. You can go on now.",
    "totp-removed": "The authenticator app was removed from your account.",
    "passkey-added": "Your passkey was added.",
    "passkey-removed": "The passkey was removed from your account.",
}


@router.get("/account/devices")
async def account_devices(
    request: Request, principal: Principal = Depends(device_manager)
) -> Response:
    """The device list alone, for the page to refresh itself when realtime events arrive."""
    return render(request, "devices.html", await _devices(request, principal))


@router.post("/account/password")
async def change_password(
    request: Request, principal: Principal = Depends(account_reader)
) -> Response:
    form = await request.form()
    # The same step-up rule as POST /v1/me/password: a recent sign-in, else confirm first.
    try:
        await container_of(request).step_up.check(principal)
    except ReauthRequired:
        return await account_page(request, principal, status=401, reauth_needed=True)
    new = _text(form, "new_password", 4096)
    if new != _text(form, "new_password_again", 4096):
        return await account_page(
            request, principal, status=400, password_error="The new passwords do not match."
        )
    try:
        changed = await container_of(request).accounts.change_password(
            principal,
            current=_text(form, "current_password", 4096),
            new=new,
            ctx=request_context(request),
        )
    except (InvalidCredentials, InvalidInput, RateLimited) as exc:
        status = 429 if isinstance(exc, RateLimited) else 400
        message = exc.message
        if isinstance(exc, RateLimited):
            message = f"Too many attempts. Try again in {max(1, exc.retry_after)} seconds."
        return await account_page(request, principal, status=status, password_error=message)
    response = RedirectResponse("/account?done=password#password", status_code=303)
    # The session that made the change continues under a new secret (the old cookie is dead).
    replacement = changed.session
    if replacement is not None and replacement.secret is not None:
        request.app.state.session_cookie.set(response, replacement.secret)
    return response


@router.post("/account/reauth")
async def reauthenticate(
    request: Request, principal: Principal = Depends(enrolment_reader)
) -> Response:
    """Confirm the password: this session counts as freshly signed in (``/v1/auth/reauth``)."""
    form = await request.form()
    try:
        await container_of(request).step_up.reauth(
            principal,
            _text(form, "password", 4096),
            request_context(request),
            _text(form, "code", 100).replace(" ", "") or None,
        )
    except (InvalidCredentials, RateLimited, MfaCodeRequired) as exc:
        message = exc.message
        status = 401
        if isinstance(exc, RateLimited):
            message = f"Too many attempts. Try again in {max(1, exc.retry_after)} seconds."
            status = 429
        return await account_page(
            request, principal, status=status, reauth_needed=True, reauth_error=message
        )
    return RedirectResponse("/account?done=reauth#password", status_code=303)


@router.post("/account/email/verification")
async def send_verification(
    request: Request, principal: Principal = Depends(account_reader)
) -> Response:
    """A new verification link to the account's address (``/v1/me/email/verification``)."""
    assert principal.user_id is not None
    try:
        await container_of(request).lifecycle.resend_verification(
            principal.user_id, request_context(request)
        )
    except Conflict:
        return RedirectResponse("/account", status_code=303)
    except RateLimited as exc:
        message = f"Too many links asked for. Try again in {max(1, exc.retry_after)} seconds."
        return await account_page(request, principal, status=429, email_error=message)
    return RedirectResponse("/account?done=verification", status_code=303)


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_device(
    request: Request, session_id: str, principal: Principal = Depends(device_manager)
) -> Response:
    assert principal.user_id is not None
    await container_of(request).sessions.revoke(
        session_id[:64],
        RevokeReason.REVOKED,
        request_context(request),
        owner_id=principal.user_id,
        actor_id=principal.user_id,
    )
    if session_id == principal.session_id:
        response = RedirectResponse("/login", status_code=303)
        request.app.state.session_cookie.clear(response)
        return response
    return RedirectResponse("/account#devices", status_code=303)


@router.post("/account/sessions/revoke-others")
async def revoke_other_devices(
    request: Request, principal: Principal = Depends(device_manager)
) -> Response:
    assert principal.user_id is not None
    await container_of(request).sessions.revoke_all(
        principal.user_id,
        RevokeReason.REVOKED_OTHERS,
        request_context(request),
        except_session_id=principal.session_id,
        actor_id=principal.user_id,
    )
    return RedirectResponse("/account#devices", status_code=303)


@router.post("/account/sessions/revoke-all")
async def revoke_every_device(
    request: Request, principal: Principal = Depends(device_manager)
) -> Response:
    assert principal.user_id is not None
    await container_of(request).sessions.revoke_all(
        principal.user_id,
        RevokeReason.REVOKED,
        request_context(request),
        actor_id=principal.user_id,
    )
    response = RedirectResponse("/login", status_code=303)
    request.app.state.session_cookie.clear(response)
    return response


@router.post("/account/api-keys")
async def create_api_key(request: Request, principal: Principal = Depends(key_manager)) -> Response:
    form = await request.form()
    container = container_of(request)
    assert principal.user_id is not None
    # The same step-up rule as POST /v1/api-keys.
    try:
        await container.step_up.check(principal)
    except ReauthRequired:
        return await account_page(request, principal, status=401, reauth_needed=True)
    owner = principal.user or await container.accounts.get_user(principal.user_id)
    lifetime = _text(form, "expires", 8)
    scopes = [s for s in form.getlist("scopes") if isinstance(s, str)]
    try:
        if lifetime not in KEY_LIFETIMES:
            raise InvalidInput("Choose a lifetime from the list.")
        if not scopes:
            raise InvalidInput("Choose at least one scope.")
        created = await container.api_keys.create(
            owner,
            name=_text(form, "name", 200).strip(),
            scopes=scopes,
            grantable=principal.scopes,
            expires_in=KEY_LIFETIMES[lifetime],
            ctx=request_context(request),
            actor_id=principal.user_id,
        )
    except InvalidInput as exc:
        return await account_page(request, principal, status=400, key_error=exc.message)
    # The key is in this answer only (no-store): it is never shown again.
    return await account_page(
        request, principal, status=201, new_key=created.secret, new_key_name=created.key.name
    )


@router.post("/account/api-keys/{key_id}/revoke")
async def revoke_api_key(
    request: Request, key_id: str, principal: Principal = Depends(key_manager)
) -> Response:
    assert principal.user_id is not None
    await container_of(request).api_keys.revoke(
        key_id[:64],
        request_context(request),
        owner_id=principal.user_id,
        actor_id=principal.user_id,
    )
    return RedirectResponse("/account#api-keys", status_code=303)


@router.post("/account/apps/{client_id}/disconnect")
async def disconnect_app(
    request: Request, client_id: str, principal: Principal = Depends(device_manager)
) -> Response:
    """Revoke the app's tokens and the consent: it must ask again to sign the person in."""
    assert principal.user_id is not None
    await container_of(request).app_tokens.disconnect(
        principal.user_id, client_id[:64], request_context(request)
    )
    return RedirectResponse("/account#apps", status_code=303)


__all__ = ["account_page", "enrolment_reader", "online_sessions", "page_for_error", "router"]
