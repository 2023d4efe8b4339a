"""An unauthenticated RFC 7009 revocation answers 200 whatever the token, so it is throttled
per address like the other credential endpoints (it would otherwise test tokens for free)."""

from __future__ import annotations

from tests.conftest import ClientFactory


async def test_unauthenticated_revocations_spend_the_address_budget(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(credential_fail_limit_ip="3/minute")
    statuses = []
    for n in range(5):
        response = await client.post("/oauth2/revoke", data={"token": f"guess-{n}"})
        statuses.append(response.status_code)
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    refused = await client.post("/oauth2/revoke", data={"token": "guess"})
    assert "retry-after" in refused.headers
