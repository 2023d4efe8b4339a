"""RFC 9421 signed requests: each refusal path, asserting which refusal happened."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.security.conftest import BASE, bare
from watchword.services.context import CLI

COMPONENTS = ("@method", "@target-uri", "content-digest")


class _Key(HTTPSignatureKeyResolver):
    def __init__(self, key: bytes) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> bytes:
        return self._key


def secret_bytes(secret: str) -> bytes:
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


async def hmac_key(client: Client) -> tuple[str, bytes]:
    response = await client.post(
        "/v1/signing-keys",
        json={"name": "svc", "algorithm": "hmac-sha256", "scopes": ["profile"]},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["signing_key"]["key_id"], secret_bytes(body["secret"])


def sign(key_id: str, key: bytes, clock: ManualClock, **params: Any) -> httpx.Request:
    request = httpx.Request("GET", BASE + "/v1/me")
    options: dict[str, Any] = {
        "created": clock.now(),
        "nonce": "nonce-" + str(id(request)),
        "covered_component_ids": COMPONENTS,
        "body": request.content,
        "use_existing_digest": True,
    }
    options.update(params)
    HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=_Key(key)).sign(
        request, key_id=key_id, **options
    )
    return request


async def refused(anon: httpx.AsyncClient, request: httpx.Request, message: str) -> None:
    response = await anon.send(request)
    assert response.status_code == 401, response.text
    assert response.json()["message"] == message, response.json()


async def test_a_signature_that_has_expired_is_refused(alice: Client, clock: ManualClock) -> None:
    key_id, key = await hmac_key(alice)
    async with bare(alice) as anon:
        assert (await anon.send(sign(key_id, key, clock))).status_code == 200
        past = clock.now() - timedelta(seconds=1)
        await refused(anon, sign(key_id, key, clock, expires=past), "The signature has expired.")


async def test_a_signature_whose_alg_does_not_match_its_key_is_refused(
    alice: Client, clock: ManualClock
) -> None:
    response = await alice.post(
        "/v1/signing-keys",
        json={
            "name": "ed",
            "algorithm": "ed25519",
            "scopes": ["profile"],
            "public_key": Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode(),
        },
    )
    assert response.status_code == 201, response.text
    ed_key_id = response.json()["signing_key"]["key_id"]
    async with bare(alice) as anon:
        # HMAC over the public key's bytes, labelled alg="hmac-sha256": an algorithm confusion.
        forged = sign(ed_key_id, b"0" * 32, clock)
        assert 'alg="hmac-sha256"' in forged.headers["signature-input"]
        await refused(anon, forged, "The signature's alg does not match the key.")


async def test_signed_requests_of_a_disabled_account_are_refused(
    alice: Client, clock: ManualClock
) -> None:
    key_id, key = await hmac_key(alice)
    user_id = (await alice.get("/v1/me")).json()["user"]["id"]
    async with bare(alice) as anon:
        assert (await anon.send(sign(key_id, key, clock))).status_code == 200
        await alice.container.accounts.set_disabled(user_id, True, CLI, actor_id=None)
        await refused(anon, sign(key_id, key, clock), "The account is disabled.")


async def test_malformed_signature_headers_say_which_refusal(
    alice: Client, clock: ManualClock
) -> None:
    key_id, key = await hmac_key(alice)
    good = sign(key_id, key, clock)
    sig_input, signature = good.headers["signature-input"], good.headers["signature"]
    label_params = sig_input.split("=", 1)[1]
    cases = {
        "Malformed Signature-Input header.": {
            "Signature-Input": "sig1=(((",
            "Signature": signature,
        },
        "Exactly one signature is expected.": {
            "Signature-Input": f"{sig_input}, sig2={label_params}",
            "Signature": signature,
        },
        "Signature-Input must be an inner list of components.": {
            "Signature-Input": "sig1=1",
            "Signature": signature,
        },
        "The signature has no usable keyid parameter.": {
            "Signature-Input": sig_input.replace(f'keyid="{key_id}"', 'x="y"'),
            "Signature": signature,
        },
        "The signature does not cover: content-digest.": {
            "Signature-Input": sig_input.replace(' "content-digest"', ""),
            "Signature": signature,
        },
        "The signature does not verify.": {
            "Signature-Input": sig_input,
            "Signature": "sig1=:" + base64.b64encode(b"x" * 32).decode() + ":",
        },
        "Unknown keyid.": {
            "Signature-Input": sig_input.replace(key_id, "sk_" + "0" * 20),
            "Signature": signature,
        },
    }
    async with bare(alice) as anon:
        for message, headers in cases.items():
            response = await anon.get(
                "/v1/me", headers={**headers, "Content-Digest": good.headers["content-digest"]}
            )
            assert response.status_code == 401, (message, response.text)
            assert response.json()["message"] == message, (message, response.json())
