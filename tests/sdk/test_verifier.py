"""Verifier: good tokens of each algorithm, every hostile token, the JWKS cache and its limits."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from unittest import mock

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.sdk.issuer import ISSUER, Clock, FakeIssuer, b64, forge
from watchword.sdk import (
    InvalidToken,
    KeySetUnavailable,
    TokenExpired,
    VerifiedToken,
    Verifier,
)


def make_verifier(issuer: FakeIssuer, **options: Any) -> Verifier:
    options.setdefault("audience", "watchword")
    return Verifier(
        issuer=ISSUER,
        http_client=httpx.Client(transport=issuer.transport),
        async_http_client=httpx.AsyncClient(transport=issuer.transport),
        clock=issuer.clock,
        **options,
    )


@pytest.fixture
def verifier(issuer: FakeIssuer) -> Verifier:
    return make_verifier(issuer)


def refused(verifier: Verifier, token: Any, match: str) -> InvalidToken:
    with pytest.raises(InvalidToken, match=match) as caught:
        verifier.verify(token)
    return caught.value


# -- good tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_a_token_of_each_algorithm_verifies(issuer: FakeIssuer, algorithm: str) -> None:
    issuer.add_key("alg-key", algorithm)
    verifier = make_verifier(issuer)
    token = issuer.token("alg-key", scope="a b", roles=["admin"], client_id="c1")
    verified = verifier.verify(token)
    assert isinstance(verified, VerifiedToken)
    assert verified.subject == "user-1"
    assert verified.session_id == "session-1"
    assert verified.client_id == "c1"
    assert verified.scopes == frozenset({"a", "b"})
    assert verified.roles == frozenset({"admin"})
    assert verified.key_id == "alg-key"
    assert verified.audience == ("watchword",)
    assert verified.claims["iss"] == ISSUER


async def test_averify_gives_the_same_answer(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token(sid=...)
    verified = await verifier.averify(token)
    assert verified.session_id is None
    assert verified.subject == "user-1"


def test_a_token_for_one_of_several_audiences_verifies(issuer: FakeIssuer) -> None:
    verifier = make_verifier(issuer, audience=["notes", "watchword"])
    assert verifier.verify(issuer.token(aud=["other", "notes"])).audience == ("other", "notes")


def test_scopes_are_checked_by_require_scopes(issuer: FakeIssuer, verifier: Verifier) -> None:
    verified = verifier.verify(issuer.token(scope="notes:read"))
    assert verified.require_scopes("notes:read") is verified
    with pytest.raises(Exception, match="notes:write") as caught:
        verified.require_scopes("notes:read", "notes:write")
    assert caught.value.missing == frozenset({"notes:write"})  # type: ignore[attr-defined]


def test_a_repeated_token_is_served_from_the_cache(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token()
    first = verifier.verify(token)
    assert verifier.verify(token) is first


def test_the_cache_is_bounded(issuer: FakeIssuer) -> None:
    verifier = make_verifier(issuer, cache_size=3)
    tokens = [issuer.token() for _ in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._cache) == 3
    assert set(verifier._cache) == set(tokens[2:])


def test_a_cached_token_still_expires(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token()
    verifier.verify(token)
    issuer.clock.advance(600 + 10)
    refused(verifier, token, "expired")


# -- hostile tokens ---------------------------------------------------------------------------


def test_alg_none_is_refused(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": "k1"}, issuer.claims())
    refused(verifier, token, "alg none")
    refused(verifier, token[: token.rindex(".") + 1], "alg none")
    token = forge({"alg": "None", "typ": "at+jwt", "kid": "k1"}, issuer.claims())
    refused(verifier, token, "alg none")


def test_a_public_key_used_as_an_hmac_secret_is_refused(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    public_pem = (
        issuer.keys["k1"][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    unsigned = forge(header, issuer.claims()).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    refused(verifier, f"{unsigned}.{b64(signature)}", "algorithm HS256 is not accepted")


def test_an_algorithm_that_does_not_match_the_key_is_refused(issuer: FakeIssuer) -> None:
    issuer.add_key("rsa", "RS256")
    verifier = make_verifier(issuer)
    # Signed with the RSA key, but naming the Ed25519 key's kid.
    token = issuer.token("rsa", headers={"kid": "k1"})
    refused(verifier, token, "does not match its signing key")


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
def test_key_carrying_headers_are_refused(
    issuer: FakeIssuer, verifier: Verifier, name: str
) -> None:
    value: Any = "https://evil.test/keys" if name in ("jku", "x5u") else {"kty": "oct"}
    if name == "x5c":
        value = ["MIIB"]
    token = issuer.token(headers={name: value})
    refused(verifier, token, f"carries a {name} header")
    assert issuer.jwks_requests == 0


def test_unknown_crit_headers_are_refused(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token(headers={"crit": ["exp-2030"], "exp-2030": True})
    refused(verifier, token, "critical header")


@pytest.mark.parametrize("typ", [None, "JWT", "id+jwt", "at+jwt2", 7])
def test_only_access_token_types_are_accepted(
    issuer: FakeIssuer, verifier: Verifier, typ: Any
) -> None:
    algorithm, private = issuer.keys["k1"]
    header: dict[str, Any] = {"kid": "k1"}
    if typ is not None:
        header["typ"] = typ
    token = jwt.encode(issuer.claims(), private, algorithm=algorithm, headers=header)
    if typ is None:  # PyJWT adds typ JWT by default: forge one without any typ
        header_part = b64(json.dumps({"alg": algorithm, "kid": "k1"}).encode())
        token = header_part + token[token.index(".") :]
    refused(verifier, token, "not an access token")


def test_application_at_jwt_is_an_access_token_type(issuer: FakeIssuer, verifier: Verifier) -> None:
    assert verifier.verify(issuer.token(headers={"typ": "application/at+jwt"}))


def test_a_bad_signature_is_refused(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token()
    header, _payload, signature = token.split(".")
    tampered = b64(json.dumps(issuer.claims(sub="admin")).encode())
    refused(verifier, f"{header}.{tampered}.{signature}", "signature is invalid")
    refused(verifier, f"{header}.{_payload}.{b64(b'x' * 64)}", "signature is invalid")


def test_a_token_signed_by_an_unpublished_key_is_refused(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    issuer.add_key("rogue", publish=False)
    token = issuer.token("rogue")
    refused(verifier, token, "key id is not one of the issuer's signing keys")


def test_expiry_not_before_and_issued_at_use_the_leeway(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    now = int(issuer.clock())
    assert verifier.verify(issuer.token(exp=now - 5))  # inside the 10 s leeway
    with pytest.raises(TokenExpired, match="expired"):
        verifier.verify(issuer.token(exp=now - 11))
    assert verifier.verify(issuer.token(nbf=now + 5))
    refused(verifier, issuer.token(nbf=now + 60), "not valid yet")
    assert verifier.verify(issuer.token(iat=now + 5))
    refused(verifier, issuer.token(iat=now + 60), "issued in the future")


def test_a_token_expires_when_the_clock_moves(issuer: FakeIssuer, verifier: Verifier) -> None:
    token = issuer.token()
    assert verifier.verify(token)
    issuer.clock.advance(609)
    assert verifier.verify(token)
    issuer.clock.advance(2)
    refused(verifier, token, "expired")


def test_wrong_audience_and_issuer_are_refused(issuer: FakeIssuer, verifier: Verifier) -> None:
    refused(verifier, issuer.token(aud="billing"), "audience")
    refused(verifier, issuer.token(iss="https://evil.test"), "expected issuer")


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti"])
def test_required_claims_must_be_present(
    issuer: FakeIssuer, verifier: Verifier, claim: str
) -> None:
    refused(verifier, issuer.token(**{claim: ...}), f"no {claim} claim")


@pytest.mark.parametrize(
    ("claim", "value", "match"),
    [
        ("exp", "tomorrow", "malformed|exp claim is not a number"),
        ("iat", True, "iat claim is not a number"),
        ("sub", 42, "sub claim is not a non-empty string"),
        ("jti", "", "jti claim"),
        ("sid", ["s"], "sid claim"),
        ("scope", ["a"], "scope claim"),
        ("roles", "admin", "roles claim"),
        ("roles", [1], "roles claim"),
    ],
)
def test_claims_of_the_wrong_type_are_refused(
    issuer: FakeIssuer, verifier: Verifier, claim: str, value: Any, match: str
) -> None:
    refused(verifier, issuer.token(**{claim: value}), match)


def test_an_opaque_refresh_token_is_not_an_access_token(verifier: Verifier) -> None:
    refused(verifier, "wwr_" + "A" * 43, "not a signed JWT")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        b64(b"{not json").rstrip("=") + ".e30.c2ln",
        b64(b"[1,2]") + ".e30.c2ln",
    ],
)
def test_malformed_tokens_are_refused(verifier: Verifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_a_malformed_payload_is_refused(issuer: FakeIssuer, verifier: Verifier) -> None:
    header = issuer.token().split(".")[0]
    refused(verifier, f"{header}.!!notbase64!!.c2ln", "base64url")


def test_a_non_string_token_is_refused(verifier: Verifier) -> None:
    refused(verifier, None, "No token")
    refused(verifier, b"a.b.c", "No token")
    refused(verifier, ["a.b.c"], "No token")


def test_oversized_tokens_are_refused_before_parsing(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    token = issuer.token(padding="x" * 9000)
    refused(verifier, token, "longer than 8192 bytes")
    assert issuer.jwks_requests == 0


@pytest.mark.parametrize("kid", ["", "x" * 129, "bad kid", "../../etc/passwd\n", 5])
def test_an_injected_or_malformed_kid_is_refused_without_a_fetch(
    issuer: FakeIssuer, verifier: Verifier, kid: Any
) -> None:
    token = forge({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, issuer.claims(), b"s" * 64)
    refused(verifier, token, "no usable key id")
    assert issuer.jwks_requests == 0


def test_descriptions_never_echo_token_controlled_text(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    token = forge({"alg": 'HS256", error="x', "typ": "at+jwt", "kid": "k1"}, issuer.claims())
    error = refused(verifier, token, "is not accepted")
    assert '"' not in error.description


def test_unsafe_algorithms_cannot_be_configured(issuer: FakeIssuer) -> None:
    for algorithms in (["none"], ["HS256"], ["EdDSA", "HS512"], []):
        with pytest.raises(ValueError, match="algorithms"):
            make_verifier(issuer, algorithms=algorithms)


def test_an_algorithm_not_configured_is_refused(issuer: FakeIssuer) -> None:
    issuer.add_key("rsa", "RS256")
    verifier = make_verifier(issuer, algorithms=["EdDSA"])
    refused(verifier, issuer.token("rsa"), "algorithm RS256 is not accepted")


# -- the JWKS cache ---------------------------------------------------------------------------


def test_the_jwks_is_fetched_once_for_many_tokens(issuer: FakeIssuer, verifier: Verifier) -> None:
    for _ in range(20):
        verifier.verify(issuer.token())
    assert issuer.jwks_requests == 1


def test_an_unknown_kid_triggers_one_refetch(issuer: FakeIssuer, verifier: Verifier) -> None:
    verifier.verify(issuer.token())
    issuer.clock.advance(31)
    issuer.add_key("k2")  # rotated in after our first fetch
    assert verifier.verify(issuer.token("k2")).key_id == "k2"
    assert issuer.jwks_requests == 2


def test_refetches_on_unknown_kids_are_rate_limited(issuer: FakeIssuer, verifier: Verifier) -> None:
    verifier.verify(issuer.token())
    issuer.add_key("rogue", publish=False)
    for _ in range(100):
        refused(verifier, issuer.token("rogue", headers={"kid": "rogue"}), "key id")
    assert issuer.jwks_requests == 1  # the first fetch was less than 30 s ago
    issuer.clock.advance(31)
    for _ in range(100):
        refused(verifier, issuer.token("rogue"), "key id")
    assert issuer.jwks_requests == 2
    issuer.add_key("k3")
    refused(verifier, issuer.token("k3"), "key id")  # a real new key waits for the window
    issuer.clock.advance(31)
    assert verifier.verify(issuer.token("k3"))
    assert issuer.jwks_requests == 3


async def test_async_refetches_are_rate_limited_too(issuer: FakeIssuer, verifier: Verifier) -> None:
    await verifier.averify(issuer.token())
    issuer.add_key("rogue", publish=False)
    for _ in range(50):
        with pytest.raises(InvalidToken, match="key id"):
            await verifier.averify(issuer.token("rogue"))
    assert issuer.jwks_requests == 1
    issuer.clock.advance(31)
    issuer.add_key("k2")
    assert (await verifier.averify(issuer.token("k2"))).key_id == "k2"
    assert issuer.jwks_requests == 2


def test_an_unreachable_jwks_fails_closed(issuer: FakeIssuer, verifier: Verifier) -> None:
    issuer.jwks_status = 503
    with pytest.raises(KeySetUnavailable, match="HTTP 503"):
        verifier.verify(issuer.token())
    issuer.jwks_status = 200
    issuer.clock.advance(31)
    assert verifier.verify(issuer.token())


def test_a_jwks_that_is_not_a_key_set_fails_closed(issuer: FakeIssuer) -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=["not", "a", "jwks"])

    transport = httpx.MockTransport(garbage)
    verifier = Verifier(
        issuer=ISSUER, http_client=httpx.Client(transport=transport), clock=issuer.clock
    )
    with pytest.raises(KeySetUnavailable, match="no 'keys' list"):
        verifier.verify(issuer.token())


def test_a_network_failure_on_the_jwks_fails_closed(issuer: FakeIssuer) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(down)
    verifier = Verifier(
        issuer=ISSUER, http_client=httpx.Client(transport=transport), clock=issuer.clock
    )
    with pytest.raises(KeySetUnavailable, match="ConnectError"):
        verifier.verify(issuer.token())


def test_private_symmetric_and_encryption_keys_in_the_jwks_are_ignored(
    issuer: FakeIssuer,
) -> None:
    issuer.add_key("leaky", publish=False)
    leaky = json.loads(
        jwt.get_algorithm_by_name("EdDSA").to_jwk(issuer.keys["leaky"][1], as_dict=False)
    )
    issuer.jwks_extra = [
        {**leaky, "kid": "leaky"},
        {"kty": "oct", "k": b64(b"secret"), "kid": "oct", "alg": "HS256"},
        {
            **json.loads(
                jwt.get_algorithm_by_name("EdDSA").to_jwk(issuer.keys["leaky"][1].public_key())
            ),
            "kid": "enc",
            "use": "enc",
        },
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        "not a key",
    ]
    verifier = make_verifier(issuer)
    assert verifier.verify(issuer.token())
    assert set(verifier.keys.keys) == {"k1"}
    refused(verifier, issuer.token("leaky"), "key id")


def test_the_key_set_is_refreshed_when_its_max_age_runs_out(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    token = issuer.token()
    verifier.verify(token)
    issuer.clock.advance(301)
    issuer.published.discard("k1")  # the issuer dropped the key (say it leaked)
    issuer.add_key("k2")
    # The cached verification is flushed with the key that made it.
    verifier.verify(issuer.token("k2"))
    assert issuer.jwks_requests == 2
    refused(verifier, token, "key id")


def test_a_failed_refresh_keeps_the_cached_keys(issuer: FakeIssuer, verifier: Verifier) -> None:
    verifier.verify(issuer.token())
    issuer.clock.advance(301)
    issuer.jwks_status = 500
    assert verifier.verify(issuer.token())
    assert verifier.verify(issuer.token())
    assert issuer.jwks_requests == 2  # retried only after the back-off


def test_max_age_is_clamped(issuer: FakeIssuer, verifier: Verifier) -> None:
    issuer.cache_control = "max-age=1"
    verifier.verify(issuer.token())
    issuer.clock.advance(5)
    verifier.verify(issuer.token())
    assert issuer.jwks_requests == 1  # at least 30 s between refreshes


def test_verifier_options_are_validated(issuer: FakeIssuer) -> None:
    with pytest.raises(ValueError, match="audience"):
        Verifier(issuer=ISSUER, audience=[])
    with pytest.raises(ValueError, match="leeway"):
        Verifier(issuer=ISSUER, leeway=-1)
    with pytest.raises(ValueError, match="max_feed_staleness"):
        Verifier(issuer=ISSUER, max_feed_staleness=30)
    with pytest.raises(ValueError, match="not both"):
        Verifier(issuer=ISSUER, credential="k", revocations=object())  # type: ignore[arg-type]


def test_the_default_urls_follow_the_issuer(sdk_clock: Clock) -> None:
    verifier = Verifier(issuer="https://auth.example.com/", credential="key")
    assert verifier.keys.url == "https://auth.example.com/.well-known/jwks.json"
    assert verifier.source is not None
    assert verifier.source.url == "https://auth.example.com/v1/revocations/stream"  # type: ignore[attr-defined]


async def test_the_async_side_refreshes_an_expired_key_set(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    token = await verifier.averify(issuer.token())
    issuer.clock.advance(301)
    issuer.published.discard("k1")
    issuer.add_key("k2")
    assert (await verifier.averify(issuer.token("k2"))).key_id == "k2"
    assert issuer.jwks_requests == 2
    with pytest.raises(InvalidToken, match="key id"):
        await verifier.averify(issuer.token())
    assert token.key_id == "k1"


async def test_the_async_side_fails_closed_without_keys(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    issuer.jwks_status = 500
    with pytest.raises(KeySetUnavailable, match="HTTP 500"):
        await verifier.averify(issuer.token())


def test_verified_claims_are_read_only(issuer: FakeIssuer, verifier: Verifier) -> None:
    verified = verifier.verify(issuer.token())
    with pytest.raises(TypeError):
        verified.claims["sub"] = "admin"  # type: ignore[index]


def test_without_a_revocation_feed_the_first_call_waits_for_none(issuer: FakeIssuer) -> None:
    verifier = make_verifier(issuer)
    with mock.patch.object(verifier.revocations.settled, "wait") as waited:
        verifier.verify(issuer.token())
    waited.assert_not_called()


async def test_without_a_revocation_feed_the_first_async_call_waits_for_none(
    issuer: FakeIssuer,
) -> None:
    verifier = make_verifier(issuer)
    with mock.patch.object(verifier, "_await_settled") as waited:
        await verifier.averify(issuer.token())
    waited.assert_not_called()
