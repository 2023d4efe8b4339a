"""Discovery: the JWKS (RFC 7517) and the authorization server metadata (RFC 8414)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from watchword.services.keys import JWKS_MAX_AGE
from watchword.web.deps import container_of

router = APIRouter(tags=["discovery"])


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 section 8.5.1


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens",
    response_class=JwkSetResponse,
)
async def jwks(request: Request) -> JSONResponse:
    keys = container_of(request).keys
    return JwkSetResponse(keys.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
async def metadata(request: Request) -> JSONResponse:
    container = container_of(request)
    issuer = container.settings.issuer
    body = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        # REQUIRED by RFC 8414; no authorization endpoint here, so only the registered
        # "none" response type (OAuth 2.0 Multiple Response Type Encoding Practices).
        "response_types_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        # Revocation also takes a token alone (RFC 7009 for public clients).
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "scopes_supported": sorted(
            {scope for scopes in container.settings.role_scopes.values() for scope in scopes}
        ),
        "access_token_signing_alg_values_supported": [container.keys.algorithm],
        "revocation_stream_endpoint": f"{issuer}/v1/revocations/stream",
        "refresh_endpoint": f"{issuer}/v1/auth/refresh",
    }
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
