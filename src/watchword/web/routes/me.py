"""The signed-in user: who am I, my password, my security events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from watchword.domain.errors import NotFound
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.sessions import csrf_token_for
from watchword.services.context import RequestContext
from watchword.web.deps import container_of, context, require
from watchword.web.hotpath import HotRoute
from watchword.web.me_body import EncodedMe, encode_me
from watchword.web.responses import HotJSONResponse, encode_headers
from watchword.web.routes.schemas import PasswordChange
from watchword.web.stepup import require_recent_auth
from watchword.web.views import authentication_view, user_view

if TYPE_CHECKING:
    from watchword.services.container import Container

NO_STORE = {"Cache-Control": "no-store"}
NO_STORE_RAW = tuple(encode_headers(NO_STORE))

router = APIRouter(prefix="/v1/me", tags=["me"])


# Any authenticated principal, one still enrolling a required second factor too; one
# instance, shared by the declared route and the endpoint.
ANY_PRINCIPAL = require(enrolling=True)


@router.get("", summary="Who is calling: the user, the session and how it authenticated")
async def me(request: Request, principal: Principal = Depends(ANY_PRINCIPAL)) -> Response:
    return await who_is_calling(request, principal)


def me_route(container: Container) -> HotRoute:
    """``GET /v1/me`` as a plain Starlette endpoint (web/hotpath.py serves it): the same
    permission rule, the same answer, without FastAPI's per-route work, and without a
    coroutine when the principal's answer is already kept (the hot path)."""

    def answer_now(conn: HTTPConnection) -> Response | None:
        principal = ANY_PRINCIPAL.settled(conn)
        return None if principal is None else kept_answer(container, principal)

    async def endpoint(request: Request) -> Response:  # awaited when answer_now gave None
        principal = ANY_PRINCIPAL.settled(request) or await ANY_PRINCIPAL(request)
        return await answer(container, principal)  # it uses a kept answer too

    return HotRoute(endpoint, answer_now)


async def who_is_calling(request: Request, principal: Principal) -> Response:
    container = container_of(request)
    return kept_answer(container, principal) or await answer(container, principal)


def kept_answer(container: Container, principal: Principal) -> Response | None:
    """The answer from what this principal already made of itself (None: ``answer``)."""
    encoded: EncodedMe | None = principal.memo.get("me")
    if encoded is None:
        return None
    shown = None
    if principal.session_id is not None:
        shown = container.step_up.shown_cached(principal)
        if shown is None:
            return None
    if encoded.shown is not shown:
        return None
    return _response(container, encoded)


async def answer(container: Container, principal: Principal) -> Response:
    memo = principal.memo  # what this (cached, immutable) principal shows, made once
    shown = None
    if principal.session_id is not None:  # how the session signed in: amr, auth_time, acr
        # The same dict until re-read; a cache hit without a coroutine (the hot path).
        shown = container.step_up.shown_cached(principal)
        if shown is None:
            shown = await container.step_up.shown(principal)
    session = principal.session
    if session is None and principal.session_id is not None:
        # A bearer token names its session; the row is read once per cached token.
        session = memo.get("session")
        if session is None:
            session = await container.sessions.get_to_show(principal.session_id)
            memo["session"] = session
    encoded: EncodedMe | None = memo.get("me")
    if encoded is None or encoded.shown is not shown:
        user = user_view(principal)
        if user is None and principal.user_id is not None:
            user = (await container.accounts.get_user(principal.user_id)).public()
        encoded = encode_me(
            user=user,
            authentication={**authentication_view(principal), **(shown or {})},
            session=session,
            shown=shown,
            csrf_token=(
                csrf_token_for(session.id, container.csrf_key)
                if session is not None and principal.needs_csrf
                else None
            ),
            headers=NO_STORE_RAW,
        )
        if principal.user is not None or principal.user_id is None:
            memo["me"] = encoded  # an account read here is read again next time
    return _response(container, encoded)


def _response(container: Container, encoded: EncodedMe) -> Response:
    session = encoded.session
    seen = container.sessions.last_seen(session) if session is not None else None
    return HotJSONResponse(*encoded.answer_at(seen))


@router.post(
    "/password",
    summary="Change the password: the other sessions end, this one continues re-keyed",
)
async def change_password(
    body: PasswordChange,
    request: Request,
    principal: Principal = Depends(require_recent_auth("profile", session=True)),
    ctx: RequestContext = Depends(context),
) -> JSONResponse:
    """The current session continues under a new secret: a cookie session gets a new cookie
    (and CSRF token), a token session a new token pair; the old cookie value, refresh token
    and access tokens stop working, and every other session of the account ends."""
    if principal.user_id is None:
        raise NotFound("Only users have passwords.")
    container = container_of(request)
    changed = await container.accounts.change_password(
        principal, current=body.current_password, new=body.new_password, ctx=ctx
    )
    result: dict[str, Any] = {
        "status": "password_changed",
        "revoked_sessions": len(changed.revoked),
    }
    replacement = changed.session
    if replacement is None:
        return JSONResponse(result, headers=NO_STORE)
    session = replacement.session
    result["session_id"] = session.id
    if principal.method is AuthMethod.COOKIE and replacement.secret is not None:
        result["csrf_token"] = csrf_token_for(session.id, container.csrf_key)
        response = JSONResponse(result, headers=NO_STORE)
        request.app.state.session_cookie.set(response, replacement.secret)
        return response
    pair = await container.tokens.start_session(session, changed.user)
    result.update(pair.body(changed.user))
    result["status"] = "password_changed"
    return JSONResponse(result, headers=NO_STORE)


@router.get("/events", summary="My security events (audit trail), newest first")
async def my_events(
    request: Request,
    principal: Principal = Depends(require("profile")),
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, ge=1),
) -> dict[str, Any]:
    if principal.user_id is None:
        raise NotFound("Only users have security events.")
    events = await container_of(request).accounts.events_for(
        principal.user_id, limit=limit, before_id=before
    )
    return {"events": [event.public() for event in events]}
