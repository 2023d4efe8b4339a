"""The refresh grace window cannot be walked back through a token family."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.helpers import ManualClock
from tests.security.conftest import bare, bearer, token_login


async def refresh(anon: httpx.AsyncClient, token: str) -> httpx.Response:
    return await anon.post("/v1/auth/refresh", json={"refresh_token": token})


async def three_generations(anon: httpx.AsyncClient, email: str) -> tuple[Any, Any, Any]:
    first = await token_login(anon, email)
    second = (await refresh(anon, first["refresh_token"])).json()
    third = (await refresh(anon, second["refresh_token"])).json()
    return first, second, third


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")}


async def test_the_immediate_predecessor_gets_the_live_pair(
    client_factory: ClientFactory, clock: ManualClock, database: dict[str, str]
) -> None:
    client = await client_factory(**database)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    await client.register(email)
    async with bare(client) as anon:
        _, second, third = await three_generations(anon, email)
        clock.advance(2)  # within the 10 s grace window
        again = await refresh(anon, second["refresh_token"])
        assert again.status_code == 200, again.text
        assert again.json()["refresh_token"] == third["refresh_token"]
        assert again.json()["access_token"] == third["access_token"]
        assert (await anon.get("/v1/me", headers=bearer(third["access_token"]))).status_code == 200


async def test_an_older_token_of_the_family_is_reuse_even_within_grace(
    client_factory: ClientFactory, clock: ManualClock, database: dict[str, str]
) -> None:
    client = await client_factory(**database)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    await client.register(email)
    async with bare(client) as anon:
        first, _, third = await three_generations(anon, email)
        clock.advance(2)
        replay = await refresh(anon, first["refresh_token"])
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_grant"
        assert "already used" in replay.json()["message"]
        # The session is revoked: the live pair is dead too.
        live = await anon.get("/v1/me", headers=bearer(third["access_token"]))
        assert live.status_code == 401
        assert (await refresh(anon, third["refresh_token"])).status_code == 401
        session = await client.container.db.sessions.get(first["session_id"])
        assert session is not None and session.revoked_reason == "refresh_token_reuse"
