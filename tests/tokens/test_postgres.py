"""The refresh race and the key store on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import ClientFactory
from tests.helpers import ManualClock, fast_hasher
from tests.tokens.helpers import me, refresh, token_login
from watchword.services.container import Container

pytestmark = pytest.mark.postgres


async def test_concurrent_refreshes_have_one_winner_on_postgres(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client = await client_factory(database_url=postgres_url)
    await client.register("race@example.com")
    pair = await token_login(client, "race@example.com")
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(16)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    assert len({r.json()["access_token"] for r in responses}) == 1
    fresh = responses[0].json()
    assert (await me(client, fresh["access_token"])).status_code == 200
    assert (await refresh(client, fresh["refresh_token"])).status_code == 200


async def test_strict_reuse_revokes_the_family_on_postgres(
    client_factory: ClientFactory, postgres_url: str, clock: ManualClock
) -> None:
    client = await client_factory(database_url=postgres_url, refresh_reuse_grace=0)
    await client.register("strict@example.com")
    pair = await token_login(client, "strict@example.com")
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(8)))
    assert sorted(r.status_code for r in responses).count(200) == 1
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await me(client, winner["access_token"])).status_code == 401
    session = await client.container.db.sessions.get(pair["session_id"])
    assert session is not None and session.revoked_reason == "refresh_token_reuse"


async def test_key_store_first_start_and_rotation_on_postgres(
    client_factory: ClientFactory, own_postgres_url: str, settings_factory: Any, clock: ManualClock
) -> None:
    # Its own database: keys another test left in a shared one, made at a later moment of
    # that test's clock, would not be due for rotation at this one's.
    client = await client_factory(database_url=own_postgres_url)
    settings = settings_factory(database_url=own_postgres_url)
    nodes = [Container(settings, clock=clock, hasher=fast_hasher()) for _ in range(4)]
    try:
        # The app already holds a key; concurrent starts add none, concurrent rotations add
        # exactly one each time (the generation is unique).
        await asyncio.gather(*(node.keys.ensure_key() for node in nodes))
        stored = await client.container.token_stores.keys.all()
        assert len({node.keys.signing_key().kid for node in nodes}) == 1
        before = len(stored)
        clock.advance(31 * 86_400)
        results = await asyncio.gather(*(node.keys.rotate_if_due() for node in nodes))
        assert len([kid for kid in results if kid]) == 1
        stored = await client.container.token_stores.keys.all()
        assert len(stored) == before + 1
        assert [k.retired_at is None for k in stored].count(True) == 1
        # The serving node picks the new key up from the control feed.
        await client.container.control.poll_once()
        assert client.container.keys.signing_key().kid == stored[-1].kid
        jwks = (await client.get("/.well-known/jwks.json")).json()["keys"]
        assert stored[-1].kid in [k["kid"] for k in jwks]
    finally:
        for node in nodes:
            await node.db.close()


async def test_jti_revocation_and_restart_on_postgres(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client = await client_factory(database_url=postgres_url)
    await client.register("jti@example.com")
    pair = await token_login(client, "jti@example.com")
    principal = await client.container.tokens.authenticate_bearer(pair["access_token"])
    assert principal.credential_id and principal.expires_at
    await client.container.tokens.revoke_jti(principal.credential_id, principal.expires_at)
    await client.container.tokens.revoke_jti(principal.credential_id, principal.expires_at)
    other = await client_factory(database_url=postgres_url)
    assert other.container.tokens.is_revoked(None, principal.credential_id)
    assert (await me(other, pair["access_token"])).status_code == 401
