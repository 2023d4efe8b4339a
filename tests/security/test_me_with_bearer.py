"""GET /v1/me shows the caller's session whether it came with a cookie or a bearer token."""

from __future__ import annotations

from tests.conftest import ClientFactory
from tests.helpers import PASSWORD


async def test_a_bearer_token_sees_its_session_like_a_cookie_does(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory()
    await client.register()
    response = await client.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": PASSWORD,
            "mode": "token",
            "device_name": "phone",
        },
    )
    tokens = response.json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    for _ in range(2):  # the first read and the cached one
        body = (await client.get("/v1/me", headers=bearer)).json()
        assert body["session"] is not None
        assert body["session"]["id"] == body["authentication"]["session_id"]
        assert body["session"]["device"]["name"] == "phone"
        assert body["session"]["current"] is True
        assert "csrf_token" not in body  # a bearer request cannot be forged cross-site
