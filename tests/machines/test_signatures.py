"""RFC 9421 signed requests: the SDK signer against the server, every refusal path, and the
RFC's own test vectors (an independent implementation) verified by the server's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from watchword.domain.audit import AuditType
from watchword.domain.signatures import (
    SignatureAlgorithm,
    SignaturePolicy,
    SignatureRejected,
    ed25519_public_key,
    parse_ed25519_public_key,
    read_signature_input,
    verify_signature,
)
from watchword.sdk.signing import HttpSignatureAuth

BASE = "http://127.0.0.1:8000"


class _Secret(HTTPSignatureKeyResolver):
    def __init__(self, secret: str) -> None:
        self._key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))

    def resolve_private_key(self, key_id: str) -> bytes:
        return self._key


def bare(client: Client) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


async def hmac_key(client: Client, scopes: Any = ("profile", "sessions")) -> tuple[str, str]:
    response = await client.post(
        "/v1/signing-keys", json={"name": "svc", "algorithm": "hmac-sha256", "scopes": list(scopes)}
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    return body["signing_key"]["key_id"], body["secret"]


def signer(key_id: str, secret: str, clock: ManualClock, **kw: Any) -> HttpSignatureAuth:
    return HttpSignatureAuth(key_id, secret, now=clock.now, **kw)


def signed(auth: HttpSignatureAuth, method: str, path: str, **kw: Any) -> httpx.Request:
    return auth.sign(httpx.Request(method, BASE + path, **kw))


async def test_sdk_signer_interoperates_with_server(
    user_client: Client, clock: ManualClock
) -> None:
    key_id, secret = await hmac_key(user_client)
    row = await user_client.container.machines.signing_keys.get(key_id)
    assert row is not None and secret not in row.material  # sealed, not stored in clear
    async with bare(user_client) as anon:
        auth = signer(key_id, secret, clock)
        me = await anon.get("/v1/me", auth=auth)
        assert me.status_code == 200, me.text
        assert me.json()["authentication"]["method"] == "http_signature"
        assert me.json()["user"]["email"] == "alice@example.com"
        # A body is covered by its digest, and the app still receives it.
        created = await anon.post(
            "/v1/api-keys", json={"name": "from-signed", "scopes": "profile"}, auth=auth
        )
        assert created.status_code == 403  # the key lacks the api-keys scope
        assert created.json()["error"] == "insufficient_scope"
        listed = await anon.get("/v1/sessions", auth=auth)
        assert listed.status_code == 200


async def test_signed_body_reaches_the_app(user_client: Client, clock: ManualClock) -> None:
    key_id, secret = await hmac_key(user_client, ("profile", "api-keys"))
    async with bare(user_client) as anon:
        response = await anon.post(
            "/v1/api-keys",
            json={"name": "made-by-signature", "scopes": "profile"},
            auth=signer(key_id, secret, clock),
        )
    assert response.status_code == 201, response.text
    assert response.json()["api_key"]["name"] == "made-by-signature"


async def test_ed25519_registered_public_key(user_client: Client, clock: ManualClock) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    response = await user_client.post(
        "/v1/signing-keys",
        json={
            "name": "ed",
            "algorithm": "ed25519",
            "scopes": "profile",
            "public_key": pem.decode(),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["secret"] is None
    key_id = response.json()["signing_key"]["key_id"]
    async with bare(user_client) as anon:
        ok = await anon.get(
            "/v1/me", auth=HttpSignatureAuth(key_id, private_key=private, now=clock.now)
        )
        assert ok.status_code == 200, ok.text
        other = Ed25519PrivateKey.generate()
        bad = await anon.get(
            "/v1/me", auth=HttpSignatureAuth(key_id, private_key=other, now=clock.now)
        )
        assert bad.status_code == 401
        assert bad.json()["error"] == "invalid_signature"
    for bad_key in ("not a key", base64.urlsafe_b64encode(b"x" * 31).decode()):
        response = await user_client.post(
            "/v1/signing-keys",
            json={"name": "ed", "algorithm": "ed25519", "scopes": "profile", "public_key": bad_key},
        )
        assert response.status_code == 400
    missing = await user_client.post(
        "/v1/signing-keys", json={"name": "ed", "algorithm": "ed25519", "scopes": "profile"}
    )
    assert missing.status_code == 400


async def _status(client: Client, request: httpx.Request) -> httpx.Response:
    async with bare(client) as anon:
        return await anon.send(request)


async def test_refusals(user_client: Client, clock: ManualClock) -> None:
    key_id, secret = await hmac_key(user_client)
    auth = signer(key_id, secret, clock)

    async def refused(request: httpx.Request, fragment: str) -> None:
        response = await _status(user_client, request)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_signature"
        assert fragment in response.json()["message"], response.json()["message"]

    # Missing required components (signed by the library directly: the SDK always adds them).
    raw = httpx.Request("GET", BASE + "/v1/me")
    HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=_Secret(secret)).sign(
        raw,
        key_id=key_id,
        created=clock.now(),
        nonce="n0nce-missing-digest",
        covered_component_ids=("@method", "@target-uri"),
    )
    await refused(raw, "content-digest")
    # Body does not match its digest.
    request = signed(auth, "POST", "/v1/api-keys", json={"name": "a", "scopes": "profile"})
    tampered = httpx.Request(
        "POST",
        BASE + "/v1/api-keys",
        headers=request.headers,
        content=b'{"name":"b","scopes":"profile"}',
    )
    tampered.headers["content-length"] = str(len(tampered.content))
    await refused(tampered, "Content-Digest")
    # Stale and future ``created``.
    old = signer(key_id, secret, ManualClock(clock.now().replace(year=2025)))
    await refused(old.sign(httpx.Request("GET", BASE + "/v1/me")), "too old")
    future = ManualClock(clock.now())
    future.advance(301)
    await refused(
        signer(key_id, secret, future).sign(httpx.Request("GET", BASE + "/v1/me")), "future"
    )
    # Unknown key id, secret one character off, wrong target.
    await refused(
        signer("wsk_000000000000000000000000", secret, clock).sign(
            httpx.Request("GET", BASE + "/v1/me")
        ),
        "Unknown keyid",
    )
    # Change the first character: it carries six bits of the key. (The last character of a
    # 32-byte base64url secret carries only four, so "A" and "B" there decode to one key.)
    off = ("B" if secret[0] != "B" else "C") + secret[1:]
    await refused(
        signer(key_id, off, clock).sign(httpx.Request("GET", BASE + "/v1/me")), "does not verify"
    )
    moved = signed(auth, "GET", "/v1/sessions")
    await refused(httpx.Request("GET", BASE + "/v1/me", headers=moved.headers), "does not verify")
    # Malformed headers.
    for value in ("garbage(", 'a=("@method");keyid="k"', ""):
        request = signed(auth, "GET", "/v1/me")
        request.headers["signature-input"] = value
        response = await _status(user_client, request)
        assert response.status_code == 401
    events = await user_client.container.db.audit.tail(limit=100)
    reasons = {e.details.get("reason") for e in events if e.type == AuditType.CREDENTIAL_REJECTED}
    assert {"policy", "unknown_key", "bad_signature", "malformed"} <= reasons
    assert all(secret not in str(e.details) for e in events)


async def test_replayed_nonce(user_client: Client, clock: ManualClock) -> None:
    key_id, secret = await hmac_key(user_client)
    request = signed(signer(key_id, secret, clock), "GET", "/v1/me")
    assert (await _status(user_client, request)).status_code == 200
    again = await _status(user_client, request)
    assert again.status_code == 401
    assert "Replayed" in again.json()["message"]
    # A fresh nonce from the same signer is fine.
    fresh = signed(signer(key_id, secret, clock), "GET", "/v1/me")
    assert (await _status(user_client, fresh)).status_code == 200


async def test_revoked_key(user_client: Client, clock: ManualClock) -> None:
    key_id, secret = await hmac_key(user_client)
    auth = signer(key_id, secret, clock)
    assert (await _status(user_client, signed(auth, "GET", "/v1/me"))).status_code == 200
    assert (await user_client.delete(f"/v1/signing-keys/{key_id}")).status_code == 200
    response = await _status(user_client, signed(auth, "GET", "/v1/me"))
    assert response.status_code == 401 and "revoked" in response.json()["message"]
    assert (await user_client.get("/v1/signing-keys")).json()["signing_keys"] == []


async def test_constant_time_digest_comparison(user_client: Client, clock: ManualClock) -> None:
    key_id, secret = await hmac_key(user_client, ("profile", "api-keys"))
    with mock.patch(
        "watchword.domain.signatures.hmac.compare_digest", wraps=hmac.compare_digest
    ) as spy:
        request = signed(
            signer(key_id, secret, clock),
            "POST",
            "/v1/api-keys",
            json={"name": "x", "scopes": "profile"},
        )
        assert (await _status(user_client, request)).status_code == 201
    assert spy.call_count >= 1


async def test_signature_brute_force_is_rate_limited(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(credential_fail_limit_credential="3/minute")
    await client.register()
    await client.login()
    key_id, secret = await hmac_key(client)
    wrong = ("B" if secret[0] != "B" else "C") + secret[1:]  # a data-carrying character
    statuses = [
        (await _status(client, signed(signer(key_id, wrong, clock), "GET", "/v1/me"))).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    good = await _status(client, signed(signer(key_id, secret, clock), "GET", "/v1/me"))
    assert good.status_code == 200


# -- RFC 9421 Appendix B: requests signed by the RFC's authors ------------------------------

RFC_SHARED_SECRET = base64.b64decode(
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)
RFC_ED25519_PUBLIC = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
    "-----END PUBLIC KEY-----\n"
)
RFC_BODY = b'{"hello": "world"}'
RFC_HEADERS = [
    ("host", "example.com"),
    ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("content-type", "application/json"),
    (
        "content-digest",
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    ),
    ("content-length", "18"),
]
RFC_URL = "https://example.com/foo?param=Value&Pet=dog"
RFC_CREATED = datetime.fromtimestamp(1618884473, UTC)
B25 = [
    (
        "signature-input",
        'sig-b25=("date" "@authority" "content-type")'
        ';created=1618884473;keyid="test-shared-secret"',
    ),
    ("signature", "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"),
]
B26 = [
    (
        "signature-input",
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"',
    ),
    (
        "signature",
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    ),
]
RFC_POLICY = SignaturePolicy(required_components=(), require_nonce=False)


def verify_rfc(headers: list[tuple[str, str]], algorithm: SignatureAlgorithm, key: Any) -> None:
    sig = read_signature_input(headers)
    RFC_POLICY.check_params(sig, RFC_CREATED)
    verify_signature(
        method="POST",
        url=RFC_URL,
        headers=headers,
        body=RFC_BODY,
        sig=sig,
        algorithm=algorithm,
        key=key,
    )


def test_rfc9421_b25_hmac_sha256() -> None:
    verify_rfc(RFC_HEADERS + B25, SignatureAlgorithm.HMAC_SHA256, RFC_SHARED_SECRET)
    with pytest.raises(SignatureRejected):
        verify_rfc(RFC_HEADERS + B25, SignatureAlgorithm.HMAC_SHA256, RFC_SHARED_SECRET[:-1] + b"x")
    changed = [(k, "text/plain" if k == "content-type" else v) for k, v in RFC_HEADERS]
    with pytest.raises(SignatureRejected):
        verify_rfc(changed + B25, SignatureAlgorithm.HMAC_SHA256, RFC_SHARED_SECRET)


def test_rfc9421_b26_ed25519() -> None:
    key = ed25519_public_key(parse_ed25519_public_key(RFC_ED25519_PUBLIC))
    verify_rfc(RFC_HEADERS + B26, SignatureAlgorithm.ED25519, key)
    with pytest.raises(SignatureRejected):
        verify_rfc(RFC_HEADERS + B26, SignatureAlgorithm.HMAC_SHA256, RFC_SHARED_SECRET)
    with pytest.raises(SignatureRejected):
        verify_rfc(
            [(k, "19" if k == "content-length" else v) for k, v in RFC_HEADERS] + B26,
            SignatureAlgorithm.ED25519,
            key,
        )


def test_rfc9530_digest_of_the_rfc_example() -> None:
    from watchword.domain.signatures import verify_content_digest

    verify_content_digest(RFC_HEADERS, RFC_BODY)
    assert hashlib.sha512(RFC_BODY).digest() == base64.b64decode(RFC_HEADERS[3][1].split(":")[1])
    with pytest.raises(SignatureRejected):
        verify_content_digest(RFC_HEADERS, RFC_BODY + b" ")


def test_window_is_enforced_in_both_directions() -> None:
    policy = SignaturePolicy(window_seconds=300)
    headers = [
        (
            "signature-input",
            'a=("@method" "@target-uri" "content-digest");created=1000;keyid="k";nonce="abcdefgh"',
        )
    ]
    sig = read_signature_input(headers)
    policy.check_params(sig, datetime.fromtimestamp(1300, UTC))
    policy.check_params(sig, datetime.fromtimestamp(700, UTC))
    with pytest.raises(SignatureRejected, match="too old"):
        policy.check_params(sig, datetime.fromtimestamp(1301, UTC))
    with pytest.raises(SignatureRejected, match="future"):
        policy.check_params(sig, datetime.fromtimestamp(699, UTC))
    no_nonce = read_signature_input(
        [("signature-input", 'a=("@method" "@target-uri" "content-digest");created=1000;keyid="k"')]
    )
    with pytest.raises(SignatureRejected, match="nonce"):
        policy.check_params(no_nonce, datetime.fromtimestamp(1000, UTC))
    two = [("signature-input", 'a=();created=1;keyid="k", b=();created=1;keyid="k"')]
    with pytest.raises(SignatureRejected, match="Exactly one"):
        read_signature_input(two)
