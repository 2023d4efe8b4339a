"""The compat surface takes the client address the same way as the main API."""

import pytest

from tests.compat_v1.conftest import SESSION_EMAIL, SESSION_PASSWORD, CompatFactory


@pytest.mark.parametrize("auth_type", ["session_auth"])
async def test_forwarded_for_uses_the_proxy_hop_not_the_client_claim(
    compat_factory: CompatFactory, auth_type: str
) -> None:
    client = await compat_factory(auth_type, trust_forwarded_for=True)
    await client.register(SESSION_EMAIL, SESSION_PASSWORD)
    response = await client.post(
        "/api/v1/auth_session/login",
        data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD},
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"},
    )
    assert response.status_code == 200
    await client.login(SESSION_EMAIL, SESSION_PASSWORD)
    ips = {s["ip"] for s in (await client.get("/v1/sessions")).json()["sessions"]}
    assert "203.0.113.7" in ips and "6.6.6.6" not in ips
