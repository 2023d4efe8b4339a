"""Two nodes on one PostgreSQL and one Redis: token revocations, key rotations and refresh
reuse reach the other node over the bus, without waiting for the control-feed poll."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.tokens.helpers import bearer, me, refresh, token_login

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def eventually(check: Callable[[], Awaitable[bool]], attempts: int = 200) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def two_nodes(
    client_factory: ClientFactory, postgres_url: str, redis_url: str
) -> tuple[Client, Client]:
    prefix = f"wwtok-{uuid.uuid4().hex[:10]}"
    # A long poll interval: only the bus can make these tests pass quickly.
    common: dict[str, Any] = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "control_poll_interval": 3600.0,
    }
    return await client_factory(**common), await client_factory(**common)


async def test_revocations_and_rotations_cross_nodes_over_the_bus(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, clock: ManualClock
) -> None:
    one, two = await two_nodes(client_factory, postgres_url, redis_url)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    await one.register(email)
    first = await token_login(one, email)
    second = await token_login(one, email)
    assert (await me(two, first["access_token"])).status_code == 200
    assert (await me(two, second["access_token"])).status_code == 200

    # Sign-out on node one: node two refuses the token as soon as the bus delivers.
    await one.post("/v1/auth/logout", headers=bearer(first["access_token"]))

    async def refused(token: str) -> bool:
        return (await me(two, token)).status_code == 401

    await eventually(lambda: refused(first["access_token"]))

    # A revoked token id.
    principal = await one.container.tokens.authenticate_bearer(second["access_token"])
    assert principal.credential_id and principal.expires_at
    await one.container.tokens.revoke_jti(principal.credential_id, principal.expires_at)
    await eventually(lambda: refused(second["access_token"]))

    # A rotation: node two signs with the new key.
    kid = await one.container.keys.rotate()

    async def rotated() -> bool:
        return two.container.keys.signing_key().kid == kid

    await eventually(rotated)

    # Refresh on node two, reuse on node one after the grace window: theft everywhere.
    third = await token_login(one, email)
    fresh = (await refresh(two, third["refresh_token"])).json()
    assert (await me(one, fresh["access_token"])).status_code == 200
    clock.advance(11)
    assert (await refresh(one, third["refresh_token"])).status_code == 401
    await eventually(lambda: refused(fresh["access_token"]))
