"""What independent clients check: RFC 9068 claims through joserfc and jwcrypto, RFC 8414
metadata through Authlib, RFC 7662 token types, RFC 6750 errors and RFC 9110 ``Allow``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from jwcrypto import jwk as cjwk
from jwcrypto import jwt as cjwt

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.machines.test_oauth2 import bare, basic, register
from tests.tokens.helpers import token_login

PUBLIC_URL = "https://auth.example.com"
# joserfc flags the EdDSA name as superseded by RFC 9864; the key itself is Ed25519.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def clock() -> ManualClock:
    # Independent verifiers read the wall clock: issue at the real time.
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def https_client(client_factory: ClientFactory) -> Client:
    client = await client_factory(public_url=PUBLIC_URL)
    await client.register()
    return client


async def test_user_tokens_name_the_first_party_client_for_joserfc_and_jwcrypto(
    https_client: Client,
) -> None:
    token = (await token_login(https_client))["access_token"]
    jwks = (await https_client.get("/.well-known/jwks.json")).json()

    # joserfc: RFC 9068 section 2.2 lists client_id among the REQUIRED claims.
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": PUBLIC_URL},
        client_id={"essential": True, "value": "watchword"},
        sub={"essential": True},
        jti={"essential": True},
        iat={"essential": True},
        exp={"essential": True},
        aud={"essential": True},
    )
    registry.validate(decoded.claims)

    # jwcrypto, checking the same claims independently.
    keys = cjwk.JWKSet.from_json(json.dumps(jwks))
    checked = cjwt.JWT(
        jwt=token,
        key=keys,
        check_claims={"client_id": "watchword", "iss": PUBLIC_URL, "exp": None, "jti": None},
    )
    assert json.loads(checked.claims)["client_id"] == "watchword"


async def test_first_party_client_id_is_configurable(client_factory: ClientFactory) -> None:
    client = await client_factory(first_party_client_id="portal")
    await client.register()
    token = (await token_login(client))["access_token"]
    claims = jose_jwt.decode(
        token,
        KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json()),
        algorithms=["EdDSA"],
    ).claims
    assert claims["client_id"] == "portal" and claims["sid"]
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).is_success


async def test_metadata_passes_authlib_validation(https_client: Client) -> None:
    response = await https_client.get("/.well-known/oauth-authorization-server")
    metadata = AuthorizationServerMetadata(response.json())
    metadata.validate()
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    # The OpenID Provider metadata is the same document, and passes OIDC Discovery's rules.
    oidc = await https_client.get("/.well-known/openid-configuration")
    assert oidc.json() == response.json()
    provider = OpenIDProviderMetadata(oidc.json())
    provider.validate()
    assert "RS256" in provider["id_token_signing_alg_values_supported"]


async def test_introspection_answers_only_rfc6749_token_types(https_client: Client) -> None:
    pair = await token_login(https_client)
    resource_server = await register(https_client, "introspect")
    key = await https_client.post(
        "/v1/api-keys",
        json={"name": "ci", "scopes": ["profile"]},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )
    assert key.status_code == 201, key.text
    async with bare(https_client) as anon:
        for value in (pair["access_token"], pair["refresh_token"], key.json()["key"]):
            answer = await anon.post(
                "/oauth2/introspect", data={"token": value}, headers=basic(*resource_server)
            )
            body = answer.json()
            assert body["active"] is True
            assert body.get("token_type", "Bearer") == "Bearer", body


@pytest.mark.parametrize(
    "value", ["notatoken", "a.b", "ww_live_short", "ww_at_x", "x" * 300, "Bearer"]
)
async def test_any_unrecognised_bearer_is_an_invalid_token(client: Client, value: str) -> None:
    await client.register()
    await client.login()  # a valid cookie too: the bad bearer still decides (RFC 6750 3.1)
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"] in ("invalid_token", "invalid_api_key")


async def test_an_empty_bearer_is_an_invalid_token(client: Client) -> None:
    response = await client.get("/v1/me", headers={"Authorization": "Bearer   "})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_other_schemes_are_not_bearer_errors(client: Client) -> None:
    response = await client.get("/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert response.status_code == 401
    assert "invalid_token" not in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/api-keys", "GET, POST"),
        ("/v1/signing-keys", "GET, POST"),
        ("/v1/sessions/revoke-others", "POST"),
        ("/v1/sessions/some-id", "DELETE"),
        ("/v1/me", "GET"),
        ("/oauth2/token", "POST"),
    ],
)
async def test_every_405_lists_what_the_path_answers_to(
    client: Client, path: str, allow: str
) -> None:
    response = await client.put(path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"] == "method_not_allowed"
