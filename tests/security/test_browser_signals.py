"""What browsers are told: HTTPS cookies when the public URL is HTTPS, headers on every answer,
cross-site requests refused, and a logout that clears the site's cookies."""

from __future__ import annotations

import pytest

from tests.conftest import ClientFactory

BROWSER_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


async def test_an_https_public_url_makes_the_cookie_secure_behind_a_loopback_bind(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(host="127.0.0.1", public_url="https://auth.example.com")
    await client.register()
    response = await client.login()
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-watchword_session=")
    assert "Secure" in cookie
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_cookie_secure_still_overrides_the_public_url(client_factory: ClientFactory) -> None:
    client = await client_factory(
        host="127.0.0.1", public_url="https://auth.example.com", cookie_secure=False
    )
    await client.register()
    cookie = (await client.login()).headers["set-cookie"]
    assert cookie.startswith("watchword_session=")
    assert "Secure" not in cookie


async def test_no_hsts_without_an_https_public_url(client_factory: ClientFactory) -> None:
    client = await client_factory(host="127.0.0.1")
    response = await client.get("/healthz")
    assert "strict-transport-security" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/v1/me", "/no/such/route", "/openapi.json"])
async def test_every_answer_carries_the_browser_headers(
    client_factory: ClientFactory, path: str
) -> None:
    client = await client_factory(public_url="https://auth.example.com")
    response = await client.get(path)
    for name, value in BROWSER_HEADERS.items():
        assert response.headers[name] == value, name
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_a_cross_site_request_is_refused_even_with_a_valid_csrf_token(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory()
    await client.register()
    await client.login()
    refused = await client.post("/v1/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    assert (await client.get("/v1/me")).status_code == 200  # nothing changed
    same_origin = await client.post("/v1/auth/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == 200


async def test_logout_clears_the_sites_cookies(client_factory: ClientFactory) -> None:
    client = await client_factory()
    await client.register()
    await client.login()
    response = await client.post("/v1/auth/logout")
    assert response.status_code == 200
    assert response.headers["clear-site-data"] == '"cookies"'
