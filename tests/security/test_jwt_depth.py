"""JWT defence in depth: with a leaked signing key an attacker still cannot mint what this
server would never sign. Each refusal is 401 invalid_token with a precise description."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jwt

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.security.conftest import bare, bearer, token_login
from watchword.domain.tokens import TOKEN_TYPE
from watchword.services.keys import SigningKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(key: SigningKey, header_json: str, claims_json: str) -> str:
    """A compact JWS over exactly these JSON texts (so duplicate members survive)."""
    signing_input = f"{b64(header_json.encode())}.{b64(claims_json.encode())}"
    algorithm = jwt.get_algorithm_by_name(key.algorithm)
    signature = algorithm.sign(signing_input.encode(), key.private)
    return f"{signing_input}.{b64(signature)}"


def forge(key: SigningKey, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": TOKEN_TYPE}
    )


async def legit_claims(anon: httpx.AsyncClient) -> dict[str, Any]:
    pair = await token_login(anon)
    claims: dict[str, Any] = jwt.decode(pair["access_token"], options={"verify_signature": False})
    return claims


async def refused(anon: httpx.AsyncClient, token: str, fragment: str) -> None:
    response = await anon.get("/v1/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert fragment in response.json()["message"], response.json()["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_token_living_longer_than_the_server_issues_is_refused(alice: Client) -> None:
    key = alice.container.keys.signing_key()
    async with bare(alice) as anon:
        claims = await legit_claims(anon)
        assert (await anon.get("/v1/me", headers=bearer(forge(key, claims)))).status_code == 200
        max_ttl = alice.container.settings.access_token_max_ttl
        leeway = alice.container.settings.jwt_leeway
        long_lived = dict(claims, jti="long", exp=claims["iat"] + max_ttl + leeway + 1)
        await refused(anon, forge(key, long_lived), "lives longer")


async def test_a_user_token_naming_a_session_never_issued_is_refused(alice: Client) -> None:
    key = alice.container.keys.signing_key()
    async with bare(alice) as anon:
        claims = await legit_claims(anon)
        made_up = dict(claims, jti="madeup", sid="0" * 32)
        await refused(anon, forge(key, made_up), "session that was never issued")


async def test_a_token_signed_after_its_keys_retirement_is_refused(
    alice: Client, clock: ManualClock
) -> None:
    old = alice.container.keys.signing_key()
    async with bare(alice) as anon:
        claims = await legit_claims(anon)
        await alice.container.keys.rotate()
        assert alice.container.keys.signing_key().kid != old.kid
        clock.advance(60)
        now = int(clock.now().timestamp())
        # Signed by the retired key before its retirement: still good until it expires.
        assert (await anon.get("/v1/me", headers=bearer(forge(old, claims)))).status_code == 200
        late = dict(claims, jti="late", iat=now, exp=now + 300)
        await refused(anon, forge(old, late), "after its signing key was retired")


async def test_duplicate_member_names_are_refused(alice: Client) -> None:
    key = alice.container.keys.signing_key()
    async with bare(alice) as anon:
        claims = await legit_claims(anon)
        header = json.dumps({"alg": key.algorithm, "kid": key.kid, "typ": TOKEN_TYPE})
        body = json.dumps(claims)
        assert (
            await anon.get("/v1/me", headers=bearer(sign_raw(key, header, body)))
        ).status_code == 200
        # The second "sub" would win in Python; another parser may read the first.
        twice = body[:-1] + ', "sub": "someone-else"}'
        await refused(anon, sign_raw(key, header, twice), "claims names the member 'sub' twice")
        header_twice = header[:-1] + f', "kid": "{key.kid}"}}'
        await refused(
            anon, sign_raw(key, header_twice, body), "header names the member 'kid' twice"
        )
