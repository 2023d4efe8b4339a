"""A client whose secret is being guessed is throttled, whatever secret comes next."""

from __future__ import annotations

import asyncio

from tests.conftest import ClientFactory
from tests.security.conftest import bare, client_token, oauth_client


async def test_right_secret_waits_out_the_window_after_the_failure_limit(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(credential_fail_limit_credential="3 per 2 seconds")
    client_id, secret = await oauth_client(client)
    other_id, other_secret = await oauth_client(client)
    async with bare(client) as anon:
        statuses = [(await client_token(anon, client_id, "x" * 43)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        refused = await client_token(anon, client_id, secret)
        assert refused.status_code == 429
        assert refused.json()["error"] == "slow_down"
        assert int(refused.headers["retry-after"]) >= 1
        # Another client is not affected by this one's budget.
        assert (await client_token(anon, other_id, other_secret)).status_code == 200
        await asyncio.sleep(2.2)  # the moving window passes
        assert (await client_token(anon, client_id, secret)).status_code == 200
