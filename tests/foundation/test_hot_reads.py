"""The hottest reads (GET /healthz, GET /v1/me) are served as plain Starlette endpoints, past
FastAPI's router: they must answer exactly as the declared routes do, refuse what those
refuse, and still pass through the authenticator chain, the security headers and the log."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.web.hotpath import HotRoutes


def hot_layer(client: Client) -> HotRoutes:
    """The app's HotRoutes layer (the middleware stack is built by the first request)."""
    app: Any = client._transport.app  # type: ignore[attr-defined]
    layer = app.middleware_stack
    while not isinstance(layer, HotRoutes):
        layer = layer.app
    return layer


async def both_ways(client: Client, path: str, **kwargs: Any) -> tuple[httpx.Response, ...]:
    """The same request answered by the plain endpoint, then by the declared route."""
    served = await client.get(path, **kwargs)
    layer = hot_layer(client)
    routes, layer.routes = layer.routes, {}
    try:
        declared = await client.get(path, **kwargs)
    finally:
        layer.routes = routes
    return served, declared


def same_answer(served: httpx.Response, declared: httpx.Response) -> None:
    assert served.status_code == declared.status_code, (served.text, declared.text)
    assert served.json() == declared.json()
    for name in ("content-type", "cache-control", "www-authenticate", "x-frame-options"):
        assert served.headers.get(name) == declared.headers.get(name), name


async def test_healthz_answers_as_the_declared_route(client: Client) -> None:
    served, declared = await both_ways(client, "/healthz")
    assert served.json() == {"status": "ok"}
    same_answer(served, declared)
    assert served.content == declared.content


async def test_me_answers_as_the_declared_route_for_cookie_bearer_and_api_key(
    client: Client,
) -> None:
    await client.register()
    await client.login()
    served, declared = await both_ways(client, "/v1/me")
    assert served.json()["authentication"]["method"] == "cookie"
    assert served.json()["csrf_token"]
    same_answer(served, declared)

    created = await client.post("/v1/api-keys", json={"name": "k", "scopes": ["profile"]})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    client.cookies.clear()
    signed_in = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD, "mode": "token"},
    )
    token = signed_in.json()["access_token"]
    for headers, method in (
        ({"Authorization": f"Bearer {token}"}, "bearer_jwt"),
        ({"X-API-Key": key}, "api_key"),
    ):
        served, declared = await both_ways(client, "/v1/me", headers=headers)
        assert served.status_code == 200, served.text
        assert served.json()["authentication"]["method"] == method
        same_answer(served, declared)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        ({"Authorization": "Bearer not-a-token-this-server-issued"}, "invalid_token"),
        ({"X-API-Key": "ww_key_unknown"}, None),
        ({"Cookie": "watchword_session=" + "x" * 43}, None),
    ],
)
async def test_me_refuses_without_a_valid_credential_as_the_declared_route_does(
    client: Client, headers: dict[str, str], code: str | None
) -> None:
    served, declared = await both_ways(client, "/v1/me", headers=headers)
    assert served.status_code == 401, served.text
    assert set(served.json()) == {"error", "message"}
    if code is not None:
        assert served.json()["error"] == code
    same_answer(served, declared)


async def test_me_refuses_a_revoked_session_at_once(client: Client) -> None:
    await client.register()
    await client.login()
    assert (await client.get("/v1/me")).status_code == 200
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    revoked = await client.delete(f"/v1/sessions/{session_id}")
    assert revoked.status_code in (200, 204), revoked.text
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"] in ("session_revoked", "invalid_session")


async def test_a_kept_answer_is_sent_without_the_endpoints_coroutine(client: Client) -> None:
    await client.register()
    await client.login()
    first = await client.get("/v1/me")  # makes and keeps the answer
    layer = hot_layer(client)
    kept = layer.routes["/v1/me"]

    async def unreachable(request: Any) -> Any:
        raise AssertionError("the kept answer should have been sent from memory")

    layer.routes["/v1/me"] = dataclasses.replace(kept, endpoint=unreachable)
    try:
        again = await client.get("/v1/me")
    finally:
        layer.routes["/v1/me"] = kept
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["content-length"] == str(len(again.content))
    assert again.headers["cache-control"] == "no-store"


async def test_other_methods_on_the_hot_paths_still_reach_the_app(client: Client) -> None:
    response = await client.post("/v1/me")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert (await client.delete("/healthz")).status_code == 405


async def test_hot_reads_carry_the_security_headers_and_an_access_line(
    client_factory: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await client_factory()
    await client.register()
    await client.login()
    with caplog.at_level(logging.INFO, logger="watchword.access"):
        response = await client.get("/v1/me")
        health = await client.get("/healthz")
    for answer in (response, health):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    lines = [r.getMessage() for r in caplog.records if r.name == "watchword.access"]
    assert any(line.startswith("GET /v1/me 200") and line.endswith("cookie") for line in lines)
    assert any(line.startswith("GET /healthz 200") for line in lines)
