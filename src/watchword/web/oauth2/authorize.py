"""``GET /oauth2/authorize`` and its consent page (RFC 6749 4.1.1, RFC 7636, OpenID Connect
Core 1.0 3.1.2).

A browser without a Watchword session goes to the sign-in page and comes back here
(``login_url``); ``prompt=none`` answers ``login_required`` instead. A person who has not
allowed the app its scopes yet sees the consent page, unless the app is first-party. The
answer is a redirect to the app's registered redirect URI carrying the code, ``state`` and
``iss`` (RFC 9207). While the client or redirect URI is in doubt the answer is an error page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.redirect_uris import origin_of
from watchword.services.authorization import (
    AuthorizationError,
    AuthorizationRequest,
    UntrustedRedirect,
)
from watchword.web.authn import principal_of
from watchword.web.deps import container_of, is_person_session, request_context, require
from watchword.web.pages.rendering import PageRoute, error_page, render
from watchword.web.pages.security import CONTENT_SECURITY_POLICY
from watchword.web.pages.signin import redirect_to_login

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PATH = "/oauth2/authorize"
CSP_SOURCE = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(:[0-9]+)?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]+)?$"
)
# Not an OpenID Connect parameter: marks the request the sign-in page sends the browser back
# with. That navigation began with the sign-in form, whose CSP (form-action 'self') a browser
# also applies to the redirects that follow it, so the way on to the app is a page that
# navigates by itself (meta refresh), not a redirect the browser would block.
FROM_LOGIN = "ww_from_login"
# Not an OpenID Connect parameter: set by this server when it sends the browser to sign in
# again for ``prompt=login``, so the sign-in that follows counts as fresh.
LOGIN_AFTER = "ww_login_after"
# The parameters the consent form carries back (everything the request said).
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    LOGIN_AFTER,
    FROM_LOGIN,
)
SCOPE_TEXT = {
    "openid": "Know who you are (your account id)",
    "profile": "See your name",
    "email": "See your email address",
}


def _params(source: Mapping[str, str] | FormData) -> dict[str, str]:
    return {name: str(source[name]) for name in PARAMETERS if isinstance(source.get(name), str)}


def _single(request: Request) -> None:
    # RFC 6749 3.1: parameters must not be included more than once.
    for name in set(request.query_params.keys()):
        if len(request.query_params.getlist(name)) > 1:
            raise UntrustedRedirect(f"The parameter {name!r} appears more than once.")


def _page_for(request: Request, exc: UntrustedRedirect) -> Response:
    return error_page(request, 400, "This sign-in link is not valid", exc.message)


def _back_to_app(location: str) -> Response:
    response = RedirectResponse(location, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


def _continue_page(request: Request, auth_request: AuthorizationRequest, location: str) -> Response:
    response = render(
        request, "continue.html", {"client_name": auth_request.client.name, "location": location}
    )
    response.headers["Referrer-Policy"] = "no-referrer"  # the code is in the URL
    return response


def _here(params: Mapping[str, str]) -> str:
    return PATH + "?" + urlencode(params)


@router.get(PATH)
async def authorize(request: Request) -> Response:
    container = container_of(request)
    params = _params(request.query_params)
    try:
        _single(request)
        auth_request = await container.authorization.check_request(params)
    except UntrustedRedirect as exc:
        return _page_for(request, exc)
    except AuthorizationError as exc:
        return _back_to_app(exc.location())
    try:
        return await _decide(request, auth_request, params)
    except AuthorizationError as exc:
        if params.get(FROM_LOGIN):
            return _continue_page(request, auth_request, exc.location())
        return _back_to_app(exc.location())


async def _decide(
    request: Request, auth_request: AuthorizationRequest, params: dict[str, str]
) -> Response:
    container = container_of(request)
    authz = container.authorization
    principal = principal_of(request)
    signed_in = is_person_session(principal) and principal.method is AuthMethod.COOKIE
    prompt = auth_request.prompt
    if not signed_in:
        if "none" in prompt:
            raise authz.refuse(auth_request, "login_required", "Nobody is signed in.")
        again = {k: v for k, v in params.items() if k != "prompt" or "login" not in prompt}
        again[FROM_LOGIN] = "1"
        return redirect_to_login(_here(again), login_hint=auth_request.login_hint)
    # The one permission rule, as every page applies it: a person's live session.
    principal = await require(session=True)(request)
    info = await container.step_up.auth_info(principal)
    auth_time = info[0] if info else datetime.fromtimestamp(0, UTC)
    login_after = params.get(LOGIN_AFTER, "")
    fresh_enough = not login_after.isdigit() or auth_time.timestamp() >= int(login_after)
    if "login" in prompt or authz.auth_too_old(auth_request, auth_time) or not fresh_enough:
        if "none" in prompt:
            raise authz.refuse(auth_request, "login_required", "A fresh sign-in is needed.")
        if "login" in prompt or not fresh_enough:
            # Sign in again, then come back without prompt=login (it would ask forever).
            now = int(container.clock.now().timestamp())
            again = {k: v for k, v in params.items() if k != "prompt"} | {LOGIN_AFTER: str(now)}
        else:
            again = dict(params)
        again[FROM_LOGIN] = "1"
        return redirect_to_login(_here(again), login_hint=auth_request.login_hint, again=True)
    assert principal.user_id is not None and principal.session_id is not None
    if await authz.needs_consent(auth_request, principal.user_id):
        if "none" in prompt:
            raise authz.refuse(auth_request, "consent_required", "The app needs your consent.")
        return _consent_page(request, auth_request, params)
    location = await authz.issue_code(
        auth_request, user_id=principal.user_id, session_id=principal.session_id
    )
    if params.get(FROM_LOGIN):
        return _continue_page(request, auth_request, location)
    return _back_to_app(location)


def _consent_page(
    request: Request, auth_request: AuthorizationRequest, params: dict[str, str]
) -> Response:
    hidden = {k: v for k, v in params.items() if k not in ("prompt", FROM_LOGIN)}
    response = render(
        request,
        "consent.html",
        {
            "client": auth_request.client,
            "scopes": [
                (scope, SCOPE_TEXT.get(scope, scope)) for scope in sorted(auth_request.scopes)
            ],
            "hidden": sorted(hidden.items()),
            "redirect_uri": auth_request.redirect_uri,
        },
    )
    # The form's answer is a redirect to the app: form-action must allow its origin, or the
    # browser stops the redirect (CSP 3, form-action applies to redirects).
    origin = origin_of(auth_request.redirect_uri)
    if CSP_SOURCE.match(origin):  # never let a URI add CSP syntax
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {origin}"
        )
    return response


@router.post(PATH)
async def consent(
    request: Request, principal: Principal = Depends(require(session=True))
) -> Response:
    """The consent form's answer (CSRF-checked by ``require`` through the form token)."""
    container = container_of(request)
    form = await request.form()
    params = _params(form)
    try:
        auth_request = await container.authorization.check_request(params)
    except UntrustedRedirect as exc:
        return _page_for(request, exc)
    except AuthorizationError as exc:
        return _back_to_app(exc.location())
    if principal.method is not AuthMethod.COOKIE:
        return _page_for(request, UntrustedRedirect("Consent is given in the browser."))
    assert principal.user_id is not None and principal.session_id is not None
    if form.get("decision") != "allow":
        refused = container.authorization.refuse(
            auth_request, "access_denied", "The person did not allow the app."
        )
        return _back_to_app(refused.location())
    await container.authorization.remember_consent(
        auth_request, principal.user_id, request_context(request)
    )
    location = await container.authorization.issue_code(
        auth_request, user_id=principal.user_id, session_id=principal.session_id
    )
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
