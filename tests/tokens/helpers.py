"""Shared steps of the token tests: sign in for tokens, call with a bearer."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import PASSWORD


async def token_login(
    client: httpx.AsyncClient, email: str = "alice@example.com", **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token", **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/me", headers=bearer(token))


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
