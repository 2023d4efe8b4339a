"""Templates, the page route class, and how errors look on a page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from watchword.domain.device import describe_user_agent
from watchword.domain.errors import WatchwordError
from watchword.domain.principal import Principal
from watchword.domain.sessions import csrf_token_for
from watchword.web.authn import principal_of
from watchword.web.deps import CSRF_HEADER, SAFE_METHODS, container_of
from watchword.web.errors import status_for
from watchword.web.pages.security import FORM_FIELD, page_headers
from watchword.web.pages.signin import redirect_to_login

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "never"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


def _device(user_agent: str | None) -> dict[str, Any]:
    return describe_user_agent(user_agent)


EVENT_LABELS = {
    "login.succeeded": "Signed in",
    "login.failed": "Failed sign-in",
    "login.rate_limited": "Sign-in throttled",
    "logout": "Signed out",
    "session.revoked": "Device signed out",
    "sessions.revoked": "Devices signed out",
    "session.evicted": "Oldest device signed out (limit)",
    "password.changed": "Password changed",
    "user.registered": "Account created",
    "admin.user_updated": "Account changed by an admin",
    "admin.user_disabled": "Account disabled",
    "token.refresh_reuse": "Refresh token reused (session ended)",
    "credential.created": "Key created",
    "credential.revoked": "Key revoked",
    "email.verification_sent": "Verification link sent",
    "email.verified": "Email address verified",
    "email.change_requested": "Email change asked for",
    "email.changed": "Email address changed",
    "password.reset_requested": "Password reset asked for",
    "password.reset": "Password reset by mail",
    "login.step_up": "Password confirmed",
    "mail.sent": "Mail sent",
}


def _event_label(kind: str) -> str:
    return EVENT_LABELS.get(kind, kind)


TEMPLATES.filters["event_label"] = _event_label
TEMPLATES.filters["when"] = _when
TEMPLATES.filters["iso"] = _iso
TEMPLATES.filters["device"] = _device


def csrf_for(request: Request, principal: Principal) -> str | None:
    if principal.session_id is None or not principal.needs_csrf:
        return None
    return csrf_token_for(principal.session_id, container_of(request).csrf_key)


def render(
    request: Request,
    template: str,
    values: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    principal = principal_of(request)
    settings = container_of(request).settings
    page: dict[str, Any] = {
        "title": settings.ui_title,
        "principal": principal,
        "signed_in": principal.is_authenticated and principal.user_id is not None,
        "is_admin": "admin" in principal.scopes,
        "csrf_token": csrf_for(request, principal),
        "csrf_field": FORM_FIELD,
        "path": request.url.path,
    }
    page.update(values or {})
    html = TEMPLATES.get_template(template).render(page)
    response = HTMLResponse(html, status_code=status)
    page_headers(response)
    return response


def error_page(request: Request, status: int, heading: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"heading": heading, "message": message}, status=status)


HEADINGS = {
    403: "Not allowed",
    404: "Not found",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}


def page_for_error(request: Request, exc: WatchwordError) -> Response:
    status = status_for(exc)
    if status == 401:
        target = request.url.path
        if request.method in SAFE_METHODS and request.url.query:
            target += "?" + request.url.query
        return redirect_to_login(target if request.method in SAFE_METHODS else None)
    message = exc.message
    if status == 503:
        message = (
            "The service cannot reach one of its stores right now. Nothing was changed. "
            "Please try again in a moment."
        )
    response = error_page(request, status, HEADINGS.get(status, "Something went wrong"), message)
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


async def _lift_form_token(request: Request) -> None:
    """Hand a form's CSRF token to ``require()`` as the header the API uses."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return
    form = await request.form()
    token = form.get(FORM_FIELD)
    if isinstance(token, str) and CSRF_HEADER not in request.headers:
        # request.headers shares its list with the scope, so require() sees the new header.
        request.scope["headers"].append((CSRF_HEADER.encode(), token.encode("latin-1", "replace")))


class PageRoute(APIRoute):
    """A page: form tokens go to the one CSRF check, and errors become pages (a missing or
    expired sign-in goes to /login and back)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            if request.method not in SAFE_METHODS:
                await _lift_form_token(request)
            try:
                response = await handler(request)
            except WatchwordError as exc:
                return page_for_error(request, exc)
            if "content-security-policy" not in response.headers:
                page_headers(response)
            return response

        return page_handler
