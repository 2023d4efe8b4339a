"""The OAuth2 endpoints, named after their RFCs, with the RFC error shape
``{"error": ..., "error_description": ...}`` instead of Watchword's own.

* ``POST /oauth2/token``: RFC 6749 section 4.4, the client-credentials grant.
* ``POST /oauth2/introspect``: RFC 7662 token introspection (clients only; see
  ``services/introspection.py`` for what a client may see).
* ``POST /oauth2/revoke``: RFC 7009 token revocation.

Requests are ``application/x-www-form-urlencoded``; every parameter at most once (RFC 6749
section 3.2). Clients authenticate with ``client_secret_basic`` or ``client_secret_post``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from watchword.domain import errors as e
from watchword.domain.clients import OAuthClient
from watchword.services.clients import InvalidClient
from watchword.web.authn_machines import (
    authenticate_oauth_client,
    authenticate_token_client,
    presents_client_credentials,
)
from watchword.web.deps import client_ip, container_of, request_context
from watchword.web.openapi import oauth2_operation

router = APIRouter(prefix="/oauth2", tags=["oauth2"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
MAX_PARAMETER = 8192
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")


class UnsupportedGrantType(e.InvalidInput):
    """RFC 6749 section 5.2 ``unsupported_grant_type``."""

    code = "unsupported_grant_type"
    default_message = (
        "grant_type is client_credentials, authorization_code or refresh_token "
        "(no implicit or password grant, RFC 9700)."
    )


def oauth_error(exc: e.WatchwordError) -> JSONResponse:
    """RFC 6749 section 5.2 errors (and their use by RFC 7009 and RFC 7662)."""
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidClient):
        status, code = 401, "invalid_client"
        headers["WWW-Authenticate"] = 'Basic realm="watchword", charset="UTF-8"'
    elif isinstance(exc, e.RateLimited):
        status, code = 429, "slow_down"
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, e.StoreUnavailable):
        status, code = 503, "temporarily_unavailable"
        headers["Retry-After"] = "1"
    elif isinstance(exc, e.InvalidCredential) and exc.code == "invalid_grant":
        status, code = 400, "invalid_grant"  # a refused code or refresh token (5.2)
    elif isinstance(exc, e.InvalidInput):
        status = 400
        code = (
            exc.code
            if exc.code in ("invalid_scope", "unsupported_grant_type", "unauthorized_client")
            else ("invalid_request")
        )
    else:
        status, code = 400, "invalid_request"
    body = {"error": code, "error_description": _description(exc.message)}
    return JSONResponse(body, status_code=status, headers=headers)


def _description(text: str) -> str:
    # RFC 6749: error_description is %x20-21 / %x23-5B / %x5D-7E.
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')


async def read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise e.InvalidInput(f"The request body must be {FORM}.")
    form = await request.form()
    for name in set(form.keys()):
        values = form.getlist(name)
        if len(values) > 1:
            raise e.InvalidInput(f"The parameter {name!r} appears more than once.")
        if not isinstance(values[0], str) or len(values[0]) > MAX_PARAMETER:
            raise e.InvalidInput(f"The parameter {name!r} is not valid.")
    return form


def _param(form: FormData, name: str, *, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise e.InvalidInput(f"The {name} parameter is required.")
        return None
    return str(value)


class TokenEndpoint:
    """RFC 6749 4.4 (client credentials), 4.1.3 (authorization code, with RFC 7636) and 6
    (refresh): a client authenticates, or a public client names itself, and gets tokens."""

    @staticmethod
    async def handle(request: Request) -> JSONResponse:
        form = await read_form(request)
        grant_type = _param(form, "grant_type", required=True)
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType()
        container = container_of(request)
        ctx = request_context(request)
        if grant_type == "client_credentials":
            client = await authenticate_oauth_client(request, form, container.clients)
            issued = await container.clients.issue_token(client, _param(form, "scope"), ctx)
            return JSONResponse(issued.body(), headers=NO_STORE)
        client = await authenticate_token_client(request, form, container.clients)
        if grant_type == "authorization_code":
            body = await container.app_tokens.redeem_code(
                client,
                _param(form, "code"),
                _param(form, "redirect_uri"),
                _param(form, "code_verifier"),
                ctx,
            )
        else:
            body = await container.app_tokens.refresh(
                client, _param(form, "refresh_token"), _param(form, "scope"), ctx
            )
        return JSONResponse(body, headers=NO_STORE)


class IntrospectionEndpoint:
    """RFC 7662 section 2: ``active`` and the claims, for authenticated clients only."""

    @staticmethod
    async def handle(request: Request) -> JSONResponse:
        form = await read_form(request)
        container = container_of(request)
        client: OAuthClient = await authenticate_oauth_client(request, form, container.clients)
        token = _param(form, "token", required=True)
        container.introspection.check_hint(_param(form, "token_type_hint"))
        assert token is not None
        body: dict[str, Any] = await container.introspection.introspect(token, client)
        return JSONResponse({k: v for k, v in body.items() if v is not None}, headers=NO_STORE)


class RevocationEndpoint:
    """RFC 7009 section 2: 200 whether or not the token existed."""

    @staticmethod
    async def handle(request: Request) -> JSONResponse:
        form = await read_form(request)
        container = container_of(request)
        client = None
        if presents_client_credentials(request, form):
            client = await authenticate_oauth_client(request, form, container.clients)
        else:
            await container.credential_throttle.anonymous_attempt(client_ip(request))
        token = _param(form, "token", required=True)
        container.introspection.check_hint(_param(form, "token_type_hint"))
        assert token is not None
        await container.introspection.revoke(token, client, request_context(request))
        return JSONResponse({}, headers=NO_STORE)


async def _run(endpoint: Any, request: Request) -> JSONResponse:
    try:
        response: JSONResponse = await endpoint.handle(request)
    except e.WatchwordError as exc:
        return oauth_error(exc)
    return response


_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_PARAMETER}
# An empty client_id or client_secret counts as absent (client_secret_basic may be used).
_OPTIONAL_TEXT: dict[str, Any] = {"type": "string", "maxLength": MAX_PARAMETER}
_CLIENT = {"client_id": _OPTIONAL_TEXT, "client_secret": _OPTIONAL_TEXT}
_HINT = {"type": "string", "maxLength": 64, "pattern": "^[\\x00-\\x7f]*$"}
_TOKEN = {"token": _TEXT, "token_type_hint": _HINT}
_ERRORS = [400, 401, 413, 429, 503]


@router.post(
    "/token",
    summary="RFC 6749: tokens for client credentials, an authorization code, a refresh token",
    openapi_extra=oauth2_operation(
        {
            "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
            "scope": _TEXT,
            "code": _TEXT,
            "redirect_uri": _TEXT,
            "code_verifier": _TEXT,
            "refresh_token": _TEXT,
        }
        | _CLIENT,
        ["grant_type"],
        _ERRORS,
    ),
)
async def token(request: Request) -> JSONResponse:
    return await _run(TokenEndpoint, request)


@router.post(
    "/introspect",
    summary="RFC 7662: token introspection (authenticated clients)",
    openapi_extra=oauth2_operation(_TOKEN | _CLIENT, ["token"], _ERRORS),
)
async def introspect(request: Request) -> JSONResponse:
    return await _run(IntrospectionEndpoint, request)


@router.post(
    "/revoke",
    summary="RFC 7009: token revocation",
    openapi_extra=oauth2_operation(_TOKEN | _CLIENT, ["token"], _ERRORS),
)
async def revoke(request: Request) -> JSONResponse:
    return await _run(RevocationEndpoint, request)
