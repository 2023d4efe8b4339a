"""The served OpenAPI document, with every status an operation can answer.

The error statuses are derived here, once, from what each route is made of, rather than listed
by hand on every decorator: a route that needs a principal can answer 401, 403 and 429 (the
credential throttle); one with a body 400, 413 and 422; one with parameters 422; one with path
parameters 404; every route that reads a store 503. Each is declared with the body it really
has: Watchword's ``{"error", "message"}``, or RFC 6749's ``{"error", "error_description"}`` on
the ``/oauth2`` endpoints, which declare their own responses and form bodies.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from watchword.domain.principal import Principal

ERROR = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable, machine-readable code."},
        "message": {"type": "string", "description": "What went wrong, for people."},
    },
}
OAUTH_ERROR = "OAuthError"
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "RFC 6749 section 5.2 error code."},
        "error_description": {"type": "string"},
    },
}

DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid credential",
    403: "Not allowed (scope, role, CSRF or origin)",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid request parameters or body",
    429: "Too many attempts",
    503: "A store is unavailable; retry later",
}

# Statuses that only some routes answer, beyond what their shape tells.
SPECIAL: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/users"): {409, 429},
    ("post", "/v1/auth/login"): {401, 403, 429},
    ("post", "/v1/auth/refresh"): {401, 429},
    # the second step of a sign-in: wrong or replayed code, used or expired challenge
    ("post", "/v1/auth/mfa"): {401, 403, 429},
    ("post", "/v1/auth/reauth"): {401, 429},
    # passkeys: a response that does not verify, a used or expired challenge; a disabled
    # account; an authenticator already registered; no passkey to answer a challenge with
    ("post", "/v1/auth/passkey/options"): {429},
    ("post", "/v1/auth/passkey"): {401, 403, 429},
    ("post", "/v1/auth/mfa/passkey/options"): {401, 403, 404, 429},
    ("post", "/v1/me/passkeys/options"): {404},
    ("post", "/v1/auth/reauth/passkey/options"): {404},
    ("post", "/v1/me/passkeys"): {404, 409},
    # mailed tokens: unknown, used or expired; throttled; already verified
    ("post", "/v1/me/email/verify"): {400, 401, 409, 429},
    ("post", "/v1/me/email/verification"): {401, 409, 429},
    ("post", "/v1/auth/password-reset"): {429},
    ("post", "/v1/auth/password-reset/confirm"): {400, 401, 429},
}
# OpenAPI links (3.1 section 4.8.20): how an id one operation answers feeds another, so a
# client generator, and the stateful contract test, can follow created and listed resources.
# Only resources a caller made or owns: nothing here points at another user's account.
# (method, path, status) -> {link name: ("METHOD /target", its path parameter, body pointer)}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, str]]] = {
    ("post", "/v1/api-keys", "201"): {
        "RevokeCreatedApiKey": ("DELETE /v1/api-keys/{key_id}", "key_id", "/api_key/id"),
    },
    ("get", "/v1/api-keys", "200"): {
        "RevokeListedApiKey": ("DELETE /v1/api-keys/{key_id}", "key_id", "/api_keys/0/id"),
    },
    ("post", "/v1/signing-keys", "201"): {
        "RevokeCreatedSigningKey": (
            "DELETE /v1/signing-keys/{key_id}",
            "key_id",
            "/signing_key/id",
        ),
    },
    ("get", "/v1/signing-keys", "200"): {
        "RevokeListedSigningKey": (
            "DELETE /v1/signing-keys/{key_id}",
            "key_id",
            "/signing_keys/0/id",
        ),
    },
    ("get", "/v1/sessions", "200"): {
        "RevokeListedSession": ("DELETE /v1/sessions/{session_id}", "session_id", "/sessions/0/id"),
    },
    ("post", "/v1/users", "201"): {
        "UpdateRegisteredUser": ("PATCH /v1/admin/users/{user_id}", "user_id", "/user/id"),
        "SignOutRegisteredUser": (
            "DELETE /v1/admin/users/{user_id}/sessions",
            "user_id",
            "/user/id",
        ),
    },
}
NO_STORE_ROUTES = {
    ("get", "/healthz"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("get", "/.well-known/openid-configuration"),
}
# OpenID Connect UserInfo is a bearer-protected resource (Core 5.3), not an RFC 6749 form
# endpoint: it gets Watchword's own error statuses.
BEARER_OAUTH2_PATHS = frozenset({"/oauth2/userinfo"})


def error_response(status: int, schema: str = ERROR) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _dependency_calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in getattr(dependant, "dependencies", ()):
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def _returns_principal(call: Callable[..., Any]) -> bool:
    try:
        annotation = inspect.signature(call).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation in (Principal, "Principal")


def statuses_of(route: Any, method: str, path: str) -> set[int]:
    """The error statuses a route can answer, from its dependencies, body and parameters."""
    dependant = route.dependant
    statuses: set[int] = set()
    if (method, path) not in NO_STORE_ROUTES:
        statuses.add(503)
    if any(_returns_principal(call) for call in _dependency_calls(dependant)):
        statuses |= {400, 401, 403, 429}
    if route.body_field is not None:
        statuses |= {400, 413, 422}
    if dependant.path_params:
        statuses |= {404, 422}
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        statuses.add(422)
    statuses |= SPECIAL.get((method, path), set())
    return statuses


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR] = ERROR_SCHEMA
    components[OAUTH_ERROR] = OAUTH_ERROR_SCHEMA
    paths = schema.get("paths", {})
    for route_context in iter_route_contexts(app.routes):
        if not isinstance(route_context.original_route, APIRoute):
            continue
        route: Any = route_context
        if not route.include_in_schema or route.path_format not in paths:
            continue
        for method in route.methods or ():
            operation = paths[route.path_format].get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if (
                route.path_format.startswith("/oauth2/")
                and route.path_format not in BEARER_OAUTH2_PATHS
            ):
                continue  # they declare their RFC 6749 responses themselves
            for status in statuses_of(route, method.lower(), route.path_format):
                responses[str(status)] = error_response(status)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    add_links(paths)
    return schema


def add_links(paths: dict[str, Any]) -> None:
    """Declare :data:`LINKS` on the responses they start from, by the target's operationId."""
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue  # a surface this app does not mount
        declared = response.setdefault("links", {})
        for name, (target_route, parameter, pointer) in links.items():
            target_method, target_path = target_route.split(" ")
            target = paths.get(target_path, {}).get(target_method.lower())
            if target is None:
                continue
            declared[name] = {
                "operationId": target["operationId"],
                "parameters": {parameter: f"$response.body#{pointer}"},
            }


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def oauth2_operation(
    parameters: dict[str, dict[str, Any]], required: list[str], statuses: list[int]
) -> dict[str, Any]:
    """``openapi_extra`` for an ``/oauth2`` endpoint: its form body and RFC 6749 errors."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": parameters,
                        "required": required,
                        # Clients send only these (RFC 6749 3.2: the server ignores others)
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {str(status): error_response(status, OAUTH_ERROR) for status in statuses},
    }
