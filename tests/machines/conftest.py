"""Helpers for the machine-credential tests: a signed-in user and keys made over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client, ClientFactory


async def make_api_key(client: Client, scopes: str | list[str] = "profile", **extra: Any) -> Any:
    response = await client.post("/v1/api-keys", json={"name": "ci", "scopes": scopes, **extra})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def user_client(client_factory: ClientFactory) -> Client:
    """A client signed in as alice (cookie session, CSRF header set)."""
    client = await client_factory()
    await client.register()
    await client.login()
    return client
