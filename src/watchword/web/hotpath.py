"""The hottest read routes (``GET /healthz``, ``GET /v1/me``) as plain Starlette endpoints.

Profiled on one core, FastAPI's per-route work (matching the request against every declared
route, the dependency solver, the exception and exit-stack layers) cost more than
authenticating the request. These routes are answered here instead, innermost in the stack:
after the authenticator chain, inside the access log, the security headers and the body limit,
so they pass through everything every other route passes through but FastAPI's router.

The declared routes stay in the app and call the same functions (``routes/system.py``,
``routes/me.py``): the OpenAPI document, the other methods on these paths (405, ``HEAD``) and
a path this layer does not serve behave as before. A route may also answer from memory
(``HotRoute.answer_now``, the ``/v1/me`` of a principal whose answer is kept): no coroutine
then, neither the endpoint's nor the response's. A domain error becomes the same JSON answer
the app's handler gives; anything else goes up to the app's server-error handler, as it would
from a FastAPI route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette._utils import get_route_path
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from watchword.domain.errors import WatchwordError
from watchword.web.errors import watchword_error_response
from watchword.web.responses import HotJSONResponse

Endpoint = Callable[[Request], Awaitable[Response]]
# The endpoint's answer when memory is enough, without a coroutine; None: await the endpoint.
# It reads the request's scope only: an ``HTTPConnection``, cheaper to make than a ``Request``.
Answer = Callable[[HTTPConnection], Response | None]


@dataclass(frozen=True, slots=True)
class HotRoute:
    endpoint: Endpoint
    answer_now: Answer | None = None


class HotRoutes:
    """Serves ``GET`` on a few exact paths; every other request goes down to the app."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, HotRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "GET":
            route = self.routes.get(get_route_path(scope))
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            response = route.answer_now(HTTPConnection(scope)) if route.answer_now else None
            if response is None:
                response = await route.endpoint(Request(scope, receive, send))
        except WatchwordError as exc:
            response = watchword_error_response(exc)
        if type(response) is HotJSONResponse:
            # Sent from here: it has neither a background task nor anything else to do, and
            # the response's own coroutine costs as much as sending (profiled on one core).
            status, headers = response.status_code, response.raw_headers
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
            return
        await response(scope, receive, send)
