"""Hostile access tokens: each is refused with 401, invalid_token and a precise description."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.tokens.helpers import bearer, me, token_login


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"sig") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


class Kit:
    """A signed-in user, the server's signing key and a factory for variations."""

    def __init__(self, client: Client, pair: dict[str, Any]) -> None:
        self.client = client
        self.pair = pair
        self.header = jwt.get_unverified_header(pair["access_token"])
        self.claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
        self.private = client.container.keys.signing_key().private

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        *,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "EdDSA",
        drop: tuple[str, ...] = (),
    ) -> str:
        body = {**self.claims, **(claims or {})}
        for name in drop:
            body.pop(name, None)
        header = {"kid": self.header["kid"], "typ": "at+jwt", **(headers or {})}
        return jwt.encode(body, key or self.private, algorithm=algorithm, headers=header)

    async def refused(self, token: str, description: str) -> None:
        response = await me(self.client, token)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
        assert description in response.json()["message"], response.json()["message"]
        challenge = response.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge
        assert "error_description=" in challenge


@pytest.fixture
async def kit(client: Client) -> Kit:
    await client.register()
    pair = await token_login(client)
    assert (await me(client, pair["access_token"])).status_code == 200
    return Kit(client, pair)


async def test_the_genuine_token_and_a_resigned_copy_pass(kit: Kit) -> None:
    assert (await me(kit.client, kit.sign())).status_code == 200


async def test_alg_none(kit: Kit) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": kit.header["kid"]}, kit.claims, b"")
    await kit.refused(token, "alg none")
    token = forge({"alg": "NONE", "typ": "at+jwt", "kid": kit.header["kid"]}, kit.claims, b"")
    await kit.refused(token, "alg none")


async def test_algorithm_confusion_with_the_public_key_as_hmac_secret(kit: Kit) -> None:
    public_pem = kit.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = kit.client.container.keys.jwks()["keys"][0]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kit.header["kid"]}
    signing_input = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(kit.claims).encode())]
    )
    for secret in (public_pem, json.dumps(jwk).encode(), jwk["x"].encode()):
        import hashlib
        import hmac

        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await kit.refused(signing_input + "." + b64(mac), "'HS256' is not accepted")


async def test_unknown_and_injected_kid(kit: Kit) -> None:
    await kit.refused(kit.sign(headers={"kid": "no-such-key"}), "unknown or expired signing key")
    await kit.refused(kit.sign(headers={"kid": "../../dev/null"}), "unknown or expired signing key")
    await kit.refused(kit.sign(headers={"kid": "' OR 1=1 --"}), "unknown or expired signing key")
    await kit.refused(kit.sign(headers={"kid": "k" * 200}), "no usable key id")
    token = forge({"alg": "EdDSA", "typ": "at+jwt"}, kit.claims)
    await kit.refused(token, "no usable key id")
    token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": 7}, kit.claims)
    await kit.refused(token, "must be a string")


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
async def test_key_carrying_headers(kit: Kit, name: str) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    value: Any = "https://attacker.example/keys"
    if name == "jwk":
        value = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    elif name == "x5c":
        value = ["MIIB"]
    token = kit.sign(headers={name: value}, key=attacker)
    await kit.refused(token, f"must not carry '{name}'")
    # Even signed with the genuine key the header is refused.
    await kit.refused(kit.sign(headers={name: value}), f"must not carry '{name}'")


async def test_bad_signature(kit: Kit) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    await kit.refused(kit.sign(key=attacker), "signature is not valid")
    head, payload, signature = kit.pair["access_token"].split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["roles"] = ["admin", "user"]
    await kit.refused(
        f"{head}.{b64(json.dumps(tampered).encode())}.{signature}", "signature is not valid"
    )


async def test_expired(kit: Kit, clock: ManualClock) -> None:
    clock.advance(600 + 9)  # inside the 10 s leeway: still accepted
    assert (await me(kit.client, kit.pair["access_token"])).status_code == 200
    clock.advance(2)
    await kit.refused(kit.pair["access_token"], "expired")
    now = int(clock.now().timestamp())
    await kit.refused(kit.sign({"iat": now - 100, "exp": now - 50}), "expired")


async def test_not_yet_valid(kit: Kit, clock: ManualClock) -> None:
    now = int(clock.now().timestamp())
    await kit.refused(kit.sign({"nbf": now + 60}), "not valid yet")
    await kit.refused(kit.sign({"iat": now + 60, "exp": now + 600}), "issued in the future")
    # Within the leeway a small skew passes.
    assert (await me(kit.client, kit.sign({"nbf": now + 5, "iat": now + 5}))).status_code == 200


async def test_wrong_audience_and_issuer(kit: Kit) -> None:
    await kit.refused(kit.sign({"aud": "another-service"}), "another audience")
    await kit.refused(kit.sign({"iss": "https://evil.example"}), "another issuer")
    await kit.refused(kit.sign(drop=("aud",)), "lacks the 'aud' claim")
    await kit.refused(kit.sign(drop=("iss",)), "lacks the 'iss' claim")
    await kit.refused(kit.sign(drop=("exp",)), "lacks the 'exp' claim")
    await kit.refused(kit.sign(drop=("jti",)), "lacks the 'jti' claim")


async def test_wrong_typ(kit: Kit) -> None:
    # An ID-token-like JWT: typ JWT, or none at all.
    await kit.refused(kit.sign(headers={"typ": "JWT"}), "typ must be at+jwt")
    token = jwt.encode(
        kit.claims, kit.private, algorithm="EdDSA", headers={"kid": kit.header["kid"]}
    )
    await kit.refused(token, "typ must be at+jwt")
    # The accepted media-type spelling works.
    assert (
        await me(kit.client, kit.sign(headers={"typ": "application/at+jwt"}))
    ).status_code == 200


async def test_a_refresh_token_is_not_an_access_token(kit: Kit) -> None:
    response = await me(kit.client, kit.pair["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "refresh token is not an access token" in response.json()["message"]


async def test_oversized(kit: Kit) -> None:
    token = kit.sign({"padding": "x" * 9000})
    await kit.refused(token, "longer than 8192 bytes")


@pytest.mark.parametrize(
    "token",
    [
        "a.b.c",
        "!!!.???.***",
        b64(b"not json") + "." + b64(b"{}") + ".sig",
        b64(b"[1,2]") + "." + b64(b"{}") + ".sig",
    ],
)
async def test_malformed_header(kit: Kit, token: str) -> None:
    await kit.refused(token, "malformed")


async def test_malformed_payload(kit: Kit) -> None:
    header = b64(json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": kit.header["kid"]}).encode())
    await kit.refused(f"{header}.{b64(b'not json')}.{b64(b'x' * 64)}", "")
    await kit.refused(f"{header}.%%%%.{b64(b'x' * 64)}", "")


async def test_wrongly_typed_claims(kit: Kit) -> None:
    await kit.refused(kit.sign({"scope": ["profile"]}), "'scope' claim")
    await kit.refused(kit.sign({"roles": "admin"}), "'roles' claim")
    await kit.refused(kit.sign({"exp": "tomorrow"}), "")
    await kit.refused(kit.sign({"sid": 12}), "'sid' claim")


async def test_unknown_crit_header(kit: Kit) -> None:
    await kit.refused(kit.sign(headers={"crit": ["exp-ext"], "exp-ext": 1}), "critical")
    await kit.refused(kit.sign(headers={"crit": ["b64"], "b64": False}), "critical")


async def test_extra_claims_and_tokens_of_other_algorithms_keep_the_rules(kit: Kit) -> None:
    # A token signed with the genuine key but claiming the RS256 algorithm is refused.
    token = forge({"alg": "RS256", "typ": "at+jwt", "kid": kit.header["kid"]}, kit.claims)
    await kit.refused(token, "does not match the signing key")


async def test_non_jws_bearers_are_left_to_other_authenticators(kit: Kit) -> None:
    response = await kit.client.get("/v1/me", headers=bearer("opaque-value-without-dots"))
    assert response.status_code == 401
    # Not claimed by the JWT authenticator, so no token description from it.
    assert "access token" not in response.json()["message"]


async def test_the_wall_clock_does_not_matter(kit: Kit) -> None:
    # The test clock is months away from the wall clock: only the injected clock counts.
    assert abs(time.time() - kit.claims["iat"]) > 3600
