"""``/oauth2/logout``: OpenID Connect RP-Initiated Logout 1.0 (the ``end_session_endpoint``).

An app sends the browser here to sign the person out of Watchword. With an ``id_token_hint``
naming the browser's own session the session ends at once; without one the person confirms
on a page (a bare link must not sign anyone out: logout CSRF). Ending the session ends every
app's tokens and sends the back-channel logout tokens. The browser then goes to the
``post_logout_redirect_uri`` only when the app registered it exactly, with ``state``; any
other target gets an error page and no redirect (no open redirect).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from watchword.domain.clients import OAuthClient, plausible_client_id
from watchword.domain.errors import NotFound
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.sessions import RevokeReason
from watchword.services.authorization import UntrustedRedirect, add_query
from watchword.web.authn import principal_of
from watchword.web.deps import container_of, is_person_session, request_context, require
from watchword.web.pages.rendering import PageRoute, error_page, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PATH = "/oauth2/logout"
PARAMETERS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")


def _params(source: Mapping[str, Any] | FormData) -> dict[str, str]:
    return {n: str(source[n]) for n in PARAMETERS if isinstance(source.get(n), str) and source[n]}


async def _resolve(
    request: Request, params: dict[str, str]
) -> tuple[OAuthClient | None, str | None, dict[str, Any] | None]:
    """(the app, where to send the browser after, the hint's claims); ``UntrustedRedirect``
    when the hint is forged or the target is not registered by the app."""
    container = container_of(request)
    hint: dict[str, Any] | None = None
    if "id_token_hint" in params:
        hint = container.app_tokens.read_id_token_hint(params["id_token_hint"])
        if hint is None:
            raise UntrustedRedirect("The id_token_hint is not an ID token this server issued.")
    client_id = params.get("client_id") or (hint["aud"] if hint else None)
    if hint is not None and client_id != hint["aud"]:
        raise UntrustedRedirect("The client_id does not match the id_token_hint.")
    client = None
    if client_id is not None and plausible_client_id(client_id):
        client = await container.clients.get(client_id)
    target = params.get("post_logout_redirect_uri")
    if target is not None and (client is None or target not in client.post_logout_redirect_uris):
        raise UntrustedRedirect(
            "The post_logout_redirect_uri is not one the app registered, so you are not sent "
            "there. You can close this page."
        )
    return client, target, hint


def _after(request: Request, target: str | None, state: str | None) -> Response:
    location = add_query(target, {"state": state}) if target else "/login"
    response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    request.app.state.session_cookie.clear(response)
    return response


def _browser_session(principal: Principal) -> str | None:
    if is_person_session(principal) and principal.method is AuthMethod.COOKIE:
        return principal.session_id
    return None


async def _end(request: Request, session_id: str) -> None:
    with contextlib.suppress(NotFound):  # ended meanwhile: what was asked for
        await container_of(request).sessions.revoke(
            session_id, RevokeReason.LOGOUT, request_context(request)
        )


@router.get(PATH)
async def end_session(request: Request) -> Response:
    params = _params(request.query_params)
    try:
        client, target, hint = await _resolve(request, params)
    except UntrustedRedirect as exc:
        return error_page(request, 400, "This sign-out link is not valid", exc.message)
    session_id = _browser_session(principal_of(request))
    if session_id is None:
        return _after(request, target, params.get("state"))
    if hint is not None and hint["sid"] == session_id:
        await _end(request, session_id)
        return _after(request, target, params.get("state"))
    return render(
        request,
        "logout_confirm.html",
        {"client": client, "hidden": sorted(params.items())},
    )


@router.post(PATH)
async def confirm_end_session(
    request: Request, principal: Principal = Depends(require(session=True))
) -> Response:
    """The confirmation form (CSRF-checked by ``require`` through the form token)."""
    params = _params(await request.form())
    try:
        _, target, _ = await _resolve(request, params)
    except UntrustedRedirect as exc:
        return error_page(request, 400, "This sign-out link is not valid", exc.message)
    session_id = _browser_session(principal)
    if session_id is not None:
        await _end(request, session_id)
    return _after(request, target, params.get("state"))
