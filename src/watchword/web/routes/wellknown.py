"""Discovery: the JWKS (RFC 7517), the authorization server metadata (RFC 8414) and the
OpenID Provider metadata (OpenID Connect Discovery 1.0), which is the same document with the
OpenID Connect members: one function builds both, so they cannot disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from watchword.domain.scopes import IDENTITY_SCOPES
from watchword.services.keys import JWKS_MAX_AGE
from watchword.web.deps import container_of

if TYPE_CHECKING:
    from watchword.services.container import Container

router = APIRouter(tags=["discovery"])


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 section 8.5.1


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens",
    response_class=JwkSetResponse,
)
async def jwks(request: Request) -> JSONResponse:
    container = container_of(request)
    # Access-token keys, then the RS256 ID-token keys (distinct kids).
    keys = container.keys.jwks()["keys"] + container.id_token_keys.jwks()["keys"]
    return JwkSetResponse(
        {"keys": keys}, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
    )


def server_metadata(container: Container) -> dict[str, Any]:
    issuer = container.settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        # The code flow only: no implicit or hybrid response types (RFC 9700 2.1.2).
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        # "none": a public client names itself and proves possession with PKCE.
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
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
            | IDENTITY_SCOPES
        ),
        "access_token_signing_alg_values_supported": [container.keys.algorithm],
        "revocation_stream_endpoint": f"{issuer}/v1/revocations/stream",
        "refresh_endpoint": f"{issuer}/v1/auth/refresh",
        # OpenID Connect Discovery 1.0 section 3
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted(container.clients.id_token_algorithms),
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "amr",
            "acr",
            "at_hash",
            "azp",
            "email",
            "email_verified",
            "name",
            "given_name",
            "family_name",
        ],
        # OpenID Connect Back-Channel Logout 1.0 section 2.1
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
async def metadata(request: Request) -> JSONResponse:
    body = server_metadata(container_of(request))
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


@router.get(
    "/.well-known/openid-configuration",
    summary="OpenID Provider metadata (OpenID Connect Discovery 1.0)",
)
async def openid_configuration(request: Request) -> JSONResponse:
    body = server_metadata(container_of(request))
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
