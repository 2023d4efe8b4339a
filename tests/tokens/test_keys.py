"""Signing keys: JWKS, metadata, rotation (manual, automatic, from the CLI), first start."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import jwt
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import TEST_SECRET_KEY, ManualClock, fast_hasher
from tests.tokens.helpers import me, token_login
from watchword.config import Settings
from watchword.domain.errors import InvalidCredential, InvalidInput
from watchword.domain.keys import load_private_pem
from watchword.services.container import Container


async def test_jwks_publishes_the_public_key_only(client: Client) -> None:
    await client.register()
    pair = await token_login(client)
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age=" in response.headers["cache-control"]
    keys = response.json()["keys"]
    # The access-token key, then the RS256 key that signs OpenID Connect ID tokens.
    assert len(keys) == 2
    id_key = keys[1]
    assert id_key["kty"] == "RSA" and id_key["alg"] == "RS256" and id_key["use"] == "sig"
    assert all(name not in id_key for name in ("d", "p", "q", "dp", "dq", "qi"))
    key = keys[0]
    assert key["kid"] == jwt.get_unverified_header(pair["access_token"])["kid"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    assert key["use"] == "sig"
    assert "d" not in key
    # The published key verifies the token.
    public = jwt.PyJWK(key).key
    claims = jwt.decode(
        pair["access_token"],
        public,
        algorithms=["EdDSA"],
        audience="watchword",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sid"] == pair["session_id"]


async def test_private_halves_are_sealed_in_the_store(client: Client) -> None:
    stored = await client.container.token_stores.keys.all()
    assert len(stored) == 1
    assert "PRIVATE KEY" not in stored[0].private_sealed
    pem = client.container.master_key.unseal(stored[0].private_sealed)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_authorization_server_metadata(client: Client) -> None:
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json()
    issuer = "http://127.0.0.1:8000"
    assert body["issuer"] == issuer
    assert body["token_endpoint"] == f"{issuer}/oauth2/token"
    assert body["introspection_endpoint"] == f"{issuer}/oauth2/introspect"
    assert body["revocation_endpoint"] == f"{issuer}/oauth2/revoke"
    assert body["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert body["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert body["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",  # public clients of the code flow, with PKCE
    ]
    assert "none" in body["revocation_endpoint_auth_methods_supported"]
    assert body["access_token_signing_alg_values_supported"] == ["EdDSA"]
    assert "revocations:read" in body["scopes_supported"]


@pytest.mark.parametrize(("algorithm", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
async def test_other_algorithms(client_factory: ClientFactory, algorithm: str, kty: str) -> None:
    client = await client_factory(jwt_algorithm=algorithm)
    await client.register()
    pair = await token_login(client)
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == algorithm
    assert (await me(client, pair["access_token"])).status_code == 200
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert [k["kty"] for k in keys] == [kty, "RSA"]  # and the RS256 ID-token key
    for key in keys:
        assert all(name not in key for name in ("d", "p", "q", "dp", "dq", "qi"))


async def test_rotation_keeps_old_tokens_until_they_expire(
    client: Client, clock: ManualClock
) -> None:
    await client.register()
    old = await token_login(client)
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    new_kid = await client.container.keys.rotate()
    assert new_kid != old_kid
    (id_kid,) = [k["kid"] for k in client.container.id_token_keys.jwks()["keys"]]
    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [new_kid, old_kid, id_kid]
    fresh = await token_login(client)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    clock.advance(590)
    assert (await me(client, old["access_token"])).status_code == 200
    clock.advance(21)
    response = await me(client, old["access_token"])
    assert response.status_code == 401 and "expired" in response.json()["message"]
    # The old key stays published while a token of the longest lifetime could live...
    clock.advance(3600 + 10 - 611 - 1)
    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert old_kid in kids
    # ...and then leaves the JWKS and the verifier.
    clock.advance(2)
    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [new_kid, id_kid]
    assert client.container.keys.verifying_key(old_kid, clock.now().timestamp()) is None
    assert await client.container.keys.prune() == 1


async def test_a_long_client_token_of_a_retired_key_verifies_until_its_expiry(
    client: Client, clock: ManualClock
) -> None:
    issued = await client.container.tokens.issue_access_token(
        subject="client-1", scopes=frozenset({"reports"}), client_id="client-1", ttl=3600
    )
    await client.container.keys.rotate()
    clock.advance(3500)
    principal = await client.container.tokens.authenticate_bearer(issued.token)
    assert principal.kind == "client" and principal.client_id == "client-1"
    assert principal.scopes == frozenset({"reports"})
    clock.advance(111)
    with pytest.raises(InvalidCredential, match=r"expired|unknown"):
        await client.container.tokens.authenticate_bearer(issued.token)


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("WATCHWORD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY_FILE", settings.secret_key_file)


async def test_cli_rotation_reaches_the_running_server(
    client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchword.cli import main

    await client.register()
    before = client.container.keys.signing_key().kid
    _cli_env(monkeypatch, client.container.settings)
    assert await asyncio.to_thread(main, ["keys", "rotate", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["state"] == "signing" and rotated["kid"] != before
    # The server learns it from the control feed it polls.
    await client.container.control.poll_once()
    assert client.container.keys.signing_key().kid == rotated["kid"]
    pair = await token_login(client)
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == rotated["kid"]
    assert await asyncio.to_thread(main, ["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["kid"], k["state"]) for k in listed] == [
        (rotated["kid"], "signing"),
        (before, "verifying"),
    ]


async def test_a_token_of_a_key_rotated_elsewhere_is_accepted_before_the_event(
    client: Client, app_factory: Any
) -> None:
    await client.register()
    user = await client.container.db.users.get_by_email("alice@example.com")
    assert user is not None
    _, other = await app_factory()  # another node on the same database, not started
    await other.keys.rotate()
    token = await other.tokens.issue_access_token(
        subject=user.id, scopes=frozenset({"profile"}), roles=frozenset({"user"})
    )
    # This node has not polled the feed: the unknown kid makes it reload once.
    response = await me(client, token.token)
    assert response.status_code == 200, response.text


async def test_concurrent_first_starts_create_one_key(
    settings_factory: Any, clock: ManualClock
) -> None:
    settings = settings_factory()
    first = Container(settings, clock=clock, hasher=fast_hasher())
    await first.db.upgrade()  # type: ignore[attr-defined]
    nodes = [first] + [Container(settings, clock=clock, hasher=fast_hasher()) for _ in range(5)]
    try:
        await asyncio.gather(*(node.keys.ensure_key() for node in nodes))
        stored = await first.token_stores.keys.all()
        assert len(stored) == 1
        assert {node.keys.signing_key().kid for node in nodes} == {stored[0].kid}
    finally:
        for node in nodes:
            await node.db.close()


async def test_a_changed_algorithm_rotates_at_start(
    client: Client, app_factory: Any, clock: ManualClock
) -> None:
    old_kid = client.container.keys.signing_key().kid
    _, other = await app_factory(jwt_algorithm="ES256")
    await other.keys.ensure_key()
    assert other.keys.signing_key().algorithm == "ES256"
    kids = [k["kid"] for k in other.keys.jwks()["keys"]]
    assert kids[1:] == [old_kid] and len(kids) == 2


async def test_automatic_rotation_once_per_period_across_nodes(
    client_factory: ClientFactory, app_factory: Any, clock: ManualClock
) -> None:
    client = await client_factory(signing_key_rotation=86_400)
    _, other = await app_factory(signing_key_rotation=86_400)
    first = client.container.keys.signing_key().kid
    assert await client.container.keys.rotate_if_due() is None
    clock.advance(86_400)
    results = await asyncio.gather(
        client.container.keys.rotate_if_due(), other.keys.rotate_if_due()
    )
    assert len([kid for kid in results if kid]) == 1
    stored = await client.container.token_stores.keys.all()
    assert len(stored) == 2 and stored[0].kid == first and stored[0].retired_at is not None


async def test_a_foreign_master_key_is_a_clear_error(
    client: Client, settings_factory: Any, clock: ManualClock
) -> None:
    settings = settings_factory(secret_key="another-master-key-0123456789-abcdefghijklmnop")
    other = Container(settings, clock=clock, hasher=fast_hasher())
    try:
        with pytest.raises(InvalidInput, match="another master key"):
            await other.keys.ensure_key()
    finally:
        await other.db.close()


async def test_openapi_describes_the_token_endpoints(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    for path in (
        "/v1/auth/refresh",
        "/v1/revocations/stream",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ):
        assert path in document["paths"], path
    assert "mode" in document["components"]["schemas"]["Login"]["properties"]


async def test_a_signing_key_is_parsed_once_per_key_id(client_factory: ClientFactory) -> None:
    """Reloads (every keys.changed event) reuse the parsed key: parsing an RSA key costs tens of
    milliseconds of event loop. A node that did not make the key parses it once."""
    client = await client_factory(jwt_algorithm="RS256")
    keys = client.container.keys
    with mock.patch("watchword.services.keys.load_private_pem", wraps=load_private_pem) as parsed:
        await keys.reload()
        await keys.reload()
        assert parsed.call_count == 0  # made here at start: kept, never parsed
        other = await client_factory(jwt_algorithm="RS256")  # another node, the same store
        await other.container.keys.reload()
        await other.container.keys.reload()
        # Its access-token key and its ID-token key, once each, at start; reloads add none.
        assert parsed.call_count == 2
        assert other.container.keys.signing_key().kid == keys.signing_key().kid
