"""Domain errors to HTTP: the status map and the ``{"error", "message"}`` body."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from watchword.domain import errors as e

log = logging.getLogger("watchword.web")


class PayloadTooLarge(e.InvalidInput):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"
    default_message = "The request body is too large."


STATUS: dict[type[e.WatchwordError], int] = {
    PayloadTooLarge: 413,
    e.InvalidInput: 400,
    e.WeakPassword: 422,
    e.InvalidEmail: 422,
    e.NotAuthenticated: 401,
    e.InvalidCredentials: 401,
    e.InvalidCredential: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.RateLimited: 429,
    e.StoreUnavailable: 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_for(exc: e.WatchwordError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    response = JSONResponse(
        {"error": code, "message": message}, status_code=status, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def headers_for(exc: e.WatchwordError, status: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(exc, e.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        # RFC 6750 section 3: tell bearer clients what went wrong.
        if isinstance(exc, e.InvalidCredential):
            headers["WWW-Authenticate"] = (
                f'Bearer realm="watchword", error="invalid_token", '
                f'error_description="{_quote(exc.message)}"'
            )
        else:
            headers["WWW-Authenticate"] = 'Bearer realm="watchword"'
    elif isinstance(exc, e.InsufficientScope) and exc.challenge:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="watchword", error="insufficient_scope", '
            f'scope="{" ".join(sorted(exc.missing))}"'
        )
    if status == 503:
        headers["Retry-After"] = "1"
    return headers


def _quote(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in '"\\')


def watchword_error_response(exc: e.WatchwordError) -> JSONResponse:
    status = status_for(exc)
    return error_response(status, exc.code, exc.message, headers_for(exc, status))


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A JSON route was sent a body of another type (a form, text): FastAPI then reports the
    whole body as "not an object", which does not say what to change."""
    headers = request.headers
    sent_a_body = headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in headers
    )
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if not sent_a_body or content_type == "application/json" or content_type.endswith("+json"):
        return False
    return any(tuple(err.get("loc", ())) == ("body",) for err in exc.errors())


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    problems = []
    for err in exc.errors()[:10]:
        if err.get("type") == "json_invalid":
            return 400, "invalid_json", "The request body is not valid JSON."
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        problems.append(f"{location or 'body'}: {err.get('msg', 'invalid')}")
    return 422, "validation_error", "; ".join(problems) or "The request is not valid."


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """RFC 9110 section 15.5.6: every method the path answers to, not only the first route's.

    Read from the operations the app declares; a literal path wins over a template that also
    matches it (``/v1/sessions/revoke-others`` is not a ``/v1/sessions/{session_id}``)."""
    table: list[tuple[re.Pattern[str], bool, frozenset[str]]] | None = getattr(
        app.state, "allow_table", None
    )
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
            methods = frozenset(m.upper() for m in operations if m.upper() in _METHODS)
            table.append((re.compile(pattern + r"\Z"), "{" not in template, methods))
        app.state.allow_table = table
    literal: set[str] = set()
    templated: set[str] = set()
    for pattern, is_literal, methods in table:
        if pattern.match(path):
            (literal if is_literal else templated).update(methods)
    return sorted(literal or templated)


_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def _explain_unmounted_surface(app: FastAPI, path: str) -> None:
    """Once per surface and process: a request for a surface this server does not mount says
    why in the log (the client only sees a 404)."""
    unmounted: dict[str, str] = getattr(app.state, "unmounted", {})
    for prefix, reason in list(unmounted.items()):
        if path == prefix or path.startswith(prefix + "/"):
            del unmounted[prefix]
            log.warning("%s was requested, but %s is not served: %s", path, prefix, reason)


def install(app: FastAPI) -> None:
    @app.exception_handler(e.WatchwordError)
    async def _domain(_: Request, exc: e.WatchwordError) -> JSONResponse:
        return watchword_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _validation_message(exc)
        if code == "validation_error" and _body_not_json(request, exc):
            code = "content_type_not_json"
            message = "The body must be JSON: send it with Content-Type: application/json."
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ").capitalize()
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path)) or headers.get(
                "Allow", ""
            )
        elif exc.status_code == 404:
            _explain_unmounted_surface(app, request.url.path)
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "An unexpected error occurred.")
