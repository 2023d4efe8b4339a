"""The /api/v1 sub-application: ``before_request``, then Werkzeug-style routing.

Its own small ASGI app, so its error bodies, 404 and 405 never leak into the Watchword API and
the API's never leak here. The order is the exercise's: authentication runs before routing,
so an unknown path is 401 without credentials and 404 with valid ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from watchword.domain.errors import RateLimited, StoreUnavailable
from watchword.web.compat_v1 import views
from watchword.web.compat_v1.auth import Auth
from watchword.web.compat_v1.responses import error, message, werkzeug_page
from watchword.web.compat_v1.session_auth import SessionAuth
from watchword.web.compat_v1.views import View
from watchword.web.errors import PayloadTooLarge

if TYPE_CHECKING:
    from watchword.services.container import Container

log = logging.getLogger("watchword.compat_v1")

PREFIX = "/api/v1"
EXCLUDED_PATHS = [
    "/api/v1/status/",
    "/api/v1/unauthorized/",
    "/api/v1/forbidden/",
    "/api/v1/auth_session/login/",
]
# The order Werkzeug's Allow header shows them in, e.g. "POST, OPTIONS".
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Route:
    views: dict[str, View]
    allowed: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        methods = set(self.views) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        object.__setattr__(self, "allowed", tuple(m for m in METHOD_ORDER if m in methods))

    def view_for(self, method: str) -> View | None:
        if method == "HEAD":
            method = "GET"
        return self.views.get(method)


USER_ROUTE = Route({"GET": views.get_user, "PUT": views.update_user, "DELETE": views.delete_user})


def routes_for(auth: Auth | None) -> dict[str, Route]:
    """Every route is slash tolerant (``strict_slashes=False``): keys have no trailing slash.
    Login and logout exist only where the strategy makes sessions."""
    table = {
        "/status": Route({"GET": views.status}),
        "/stats": Route({"GET": views.stats}),
        "/unauthorized": Route({"GET": views.unauthorized}),
        "/forbidden": Route({"GET": views.forbidden}),
        "/users": Route({"GET": views.list_users, "POST": views.create_user}),
    }
    if isinstance(auth, SessionAuth):
        table["/auth_session/login"] = Route({"POST": views.login})
        table["/auth_session/logout"] = Route({"DELETE": views.logout})
    return table


class CompatApp:
    """ASGI app for everything under ``/api/v1``."""

    def __init__(self, container: Container, auth: Auth | None, *, exercise: bool = False) -> None:
        self.container = container
        self.auth = auth
        self.exercise = exercise
        self.routes = routes_for(auth)

    def match(self, route_path: str) -> tuple[Route | None, dict[str, str]]:
        path = route_path[:-1] if route_path.endswith("/") else route_path
        found = self.routes.get(path)
        if found is not None:
            return found, {}
        if path.startswith("/users/"):
            user_id = path[len("/users/") :]
            if user_id and "/" not in user_id:
                return USER_ROUTE, {"user_id": user_id}
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except StoreUnavailable:
            response = message("Service unavailable", 503, {"Retry-After": "1"})
        except RateLimited as exc:
            response = message("Too many requests", 429, {"Retry-After": str(exc.retry_after)})
        except PayloadTooLarge:
            response = werkzeug_page(413)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, scope["path"])
            response = werkzeug_page(500)
        response.headers["Access-Control-Allow-Origin"] = "*"
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        route_path = scope["path"].removeprefix(scope.get("root_path", ""))
        # ``request.path`` as Flask sees it, for require_auth.
        path = PREFIX + route_path
        auth = self.auth
        user = None
        # -- before_request --
        if auth is not None and auth.require_auth(path, EXCLUDED_PATHS):
            if auth.authorization_header(request) is None and auth.session_cookie(request) is None:
                return error(401)
            user = await auth.current_user(request)
            if user is None:
                return error(403)
        # -- routing --
        route, params = self.match(route_path)
        if route is None:
            return error(404)
        method = request.method
        view = route.view_for(method)
        if view is None:
            allow = {"Allow": ", ".join(route.allowed)}
            if method == "OPTIONS":
                return Response(b"", headers=allow, media_type="text/html")
            return werkzeug_page(405, allow)
        response: Response = await view(
            views.Call(request, self.container, auth, user, params, exercise=self.exercise)
        )
        return response


class MountAt:
    """Hands every path under ``prefix`` (and ``prefix`` itself) to ``surface``, whatever its
    characters: a Starlette ``Mount`` would miss a path with a newline in it."""

    def __init__(self, app: ASGIApp, *, prefix: str, surface: ASGIApp) -> None:
        self.app = app
        self.prefix = prefix
        self.surface = surface

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            root_path: str = scope.get("root_path", "")
            path: str = scope["path"].removeprefix(root_path)
            if path == self.prefix or path.startswith(self.prefix + "/"):
                child = {**scope, "root_path": root_path + self.prefix}
                await self.surface(child, receive, send)
                return
        await self.app(scope, receive, send)
