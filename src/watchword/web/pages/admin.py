"""The admin console: users, a user's sessions and keys, the audit trail, who is online."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from watchword.domain.audit import AuditEvent
from watchword.domain.errors import InvalidInput, NotFound, StoreUnavailable
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason
from watchword.domain.users import User
from watchword.services.clients import AppRegistration
from watchword.web.deps import container_of, request_context, require
from watchword.web.pages.account import online_sessions
from watchword.web.pages.rendering import PageRoute, render
from watchword.web.realtime.routes import realtime_of

router = APIRouter(prefix="/admin", route_class=PageRoute, include_in_schema=False)

admin = require("admin")

USERS_PER_PAGE = 25
SEARCH_SCAN = 5000  # users looked through by a search (the user store has no text index)
AUDIT_PER_PAGE = 50
AUDIT_SCAN = 2000  # latest events the audit filters look through
ONLINE_SCAN = 90  # users checked for presence (one realtime subscription each, live)


def _searchable(user: User) -> str:
    return f"{user.email} {user.first_name or ''} {user.last_name or ''} {user.id}".lower()


async def _users(request: Request, query: str, page: int) -> tuple[list[User], bool]:
    accounts = container_of(request).accounts
    if not query:
        found = await accounts.list_users(limit=USERS_PER_PAGE + 1, offset=page * USERS_PER_PAGE)
        return found[:USERS_PER_PAGE], len(found) > USERS_PER_PAGE
    needle = query.strip().lower()
    matches: list[User] = []
    offset = 0
    while offset < SEARCH_SCAN:
        batch = await accounts.list_users(limit=500, offset=offset)
        matches.extend(u for u in batch if needle in _searchable(u))
        if len(batch) < 500:
            break
        offset += 500
    start = page * USERS_PER_PAGE
    return matches[start : start + USERS_PER_PAGE], len(matches) > start + USERS_PER_PAGE


async def online_users(request: Request) -> list[tuple[User, int]]:
    """Users with live realtime connections, with how many, among the first users listed."""
    users = await container_of(request).accounts.list_users(limit=ONLINE_SCAN, offset=0)
    presence = realtime_of(request).node.presence
    online: list[tuple[User, int]] = []
    for user in users:
        try:
            count = len(await presence.list(user.id))
        except StoreUnavailable:
            return []
        if count:
            online.append((user, count))
    return online


async def _console(
    request: Request, q: str = "", page: int = 0, *, status: int = 200, **extra: Any
) -> Response:
    users, more = await _users(request, q, page)
    clients = await container_of(request).clients.list_clients(limit=100)
    watched = await container_of(request).accounts.list_users(limit=ONLINE_SCAN, offset=0)
    return render(
        request,
        "admin.html",
        {
            "users": users,
            "query": q,
            "page": page,
            "more": more,
            "online": await online_users(request),
            "watched": [u.id for u in watched],
            "clients": clients,
            **extra,
        },
        status=status,
    )


@router.get("")
async def console(
    request: Request,
    q: str = Query("", max_length=200),
    page: int = Query(0, ge=0, le=10_000),
    principal: Principal = Depends(admin),
) -> Response:
    return await _console(request, q, page)


def _lines(value: object) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()][:20]


@router.post("/clients")
async def register_app(request: Request, principal: Principal = Depends(admin)) -> Response:
    """Register an app that signs people in (as ``watchword clients create`` does); the
    secret of a confidential app is shown in this answer only."""
    form = await request.form()
    try:
        app = AppRegistration.parse(
            client_type=str(form.get("client_type") or "confidential"),
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=_lines(form.get("redirect_uris")),
            first_party=form.get("first_party") == "on",
            backchannel_logout_uri=str(form.get("backchannel_logout_uri") or "")[:2048] or None,
            post_logout_redirect_uris=_lines(form.get("post_logout_redirect_uris")),
        )
        created = await container_of(request).clients.create(
            name=str(form.get("name") or "")[:200],
            ctx=request_context(request),
            actor_id=principal.user_id,
            app=app,
        )
    except InvalidInput as exc:
        return await _console(request, status=400, client_error=exc.message)
    return await _console(
        request, status=201, new_client=created.client, new_client_secret=created.secret
    )


@router.get("/online")
async def online_fragment(request: Request, principal: Principal = Depends(admin)) -> Response:
    return render(request, "online.html", {"online": await online_users(request)})


async def _user_page(
    request: Request, user_id: str, *, status: int = 200, **extra: Any
) -> Response:
    container = container_of(request)
    user = await container.accounts.get_user(user_id[:64])
    sessions = await container.sessions.list_live(user.id)
    return render(
        request,
        "admin_user.html",
        {
            "user": user,
            "sessions": sessions,
            "online": await online_sessions(request, user.id),
            "api_keys": await container.api_keys.list_for_user(user.id),
            "roles": sorted(container.settings.role_scopes),
            **extra,
        },
        status=status,
    )


@router.get("/users/{user_id}")
async def user_page(
    request: Request, user_id: str, principal: Principal = Depends(admin)
) -> Response:
    return await _user_page(request, user_id)


@router.post("/users/{user_id}/roles")
async def set_roles(
    request: Request, user_id: str, principal: Principal = Depends(admin)
) -> Response:
    form = await request.form()
    roles = [r for r in form.getlist("roles") if isinstance(r, str) and r != "user"]
    extra = form.get("extra_roles")
    if isinstance(extra, str):
        roles.extend(r for r in extra.replace(",", " ").split() if r)
    try:
        await container_of(request).accounts.set_roles(
            user_id[:64], roles, request_context(request), actor_id=principal.user_id
        )
    except InvalidInput as exc:
        return await _user_page(request, user_id, status=400, error=exc.message)
    return RedirectResponse(f"/admin/users/{user_id[:64]}?done=roles", status_code=303)


async def _set_disabled(
    request: Request, user_id: str, principal: Principal, disabled: bool
) -> Response:
    await container_of(request).accounts.set_disabled(
        user_id[:64], disabled, request_context(request), actor_id=principal.user_id
    )
    done = "disabled" if disabled else "enabled"
    return RedirectResponse(f"/admin/users/{user_id[:64]}?done={done}", status_code=303)


@router.post("/users/{user_id}/disable")
async def disable_user(
    request: Request, user_id: str, principal: Principal = Depends(admin)
) -> Response:
    return await _set_disabled(request, user_id, principal, True)


@router.post("/users/{user_id}/enable")
async def enable_user(
    request: Request, user_id: str, principal: Principal = Depends(admin)
) -> Response:
    return await _set_disabled(request, user_id, principal, False)


@router.post("/users/{user_id}/sessions/revoke")
async def sign_out_user(
    request: Request, user_id: str, principal: Principal = Depends(admin)
) -> Response:
    container = container_of(request)
    user = await container.accounts.get_user(user_id[:64])
    await container.sessions.revoke_all(
        user.id, RevokeReason.ADMIN, request_context(request), actor_id=principal.user_id
    )
    return RedirectResponse(f"/admin/users/{user.id}?done=signed_out", status_code=303)


def _matches(event: AuditEvent, kind: str, since: datetime | None, until: datetime | None) -> bool:
    if kind and kind not in event.type:
        return False
    if since is not None and event.at < since:
        return False
    return until is None or event.at < until


def _day(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{field}: give a date such as 2026-01-31.") from exc


@router.get("/audit")
async def audit_trail(
    request: Request,
    user: str = Query("", max_length=320),
    event: str = Query("", max_length=64),
    since: str = Query("", max_length=32),
    until: str = Query("", max_length=32),
    before: int | None = Query(None, ge=1),
    principal: Principal = Depends(admin),
) -> Response:
    container = container_of(request)
    error = None
    events: list[AuditEvent] = []
    older: int | None = None
    try:
        start = _day(since, "From")
        end = _day(until, "Until")
        if end is not None and len(until) <= 10:
            end += timedelta(days=1)  # a day given alone includes that whole day
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        user_id = None
        if user:
            user_id = (await container.accounts.find_user(user)).id if "@" in user else user.strip()
        if user_id is not None:
            window = await container.db.audit.for_user(user_id, limit=AUDIT_SCAN, before_id=before)
        else:
            window = list(reversed(await container.db.audit.tail(limit=AUDIT_SCAN)))
            if before is not None:
                window = [e for e in window if (e.id or 0) < before]
        chosen = [e for e in window if _matches(e, event.strip(), start, end)]
        events = chosen[:AUDIT_PER_PAGE]
        if len(chosen) > AUDIT_PER_PAGE:
            older = events[-1].id
    except (InvalidInput, NotFound) as exc:  # a bad date, or no user with that email
        error = exc.message
    emails: dict[str, str] = {}
    for someone in {e.user_id for e in events} | {e.actor_id for e in events}:
        if someone is not None and someone not in emails:
            try:
                emails[someone] = (await container.accounts.get_user(someone)).email
            except NotFound:
                pass  # a deleted user, or an actor that is not a user (the CLI)
    return render(
        request,
        "admin_audit.html",
        {
            "emails": emails,
            "events": events,
            "older": older,
            "filters": {"user": user, "event": event, "since": since, "until": until},
            "error": error,
        },
        status=400 if error else 200,
    )
