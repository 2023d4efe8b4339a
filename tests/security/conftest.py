"""Black-box helpers for the authorization tests: every credential kind, made over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, ManualClock
from tests.realtime.conftest import Server, make_server
from watchword.sdk.signing import HttpSignatureAuth
from watchword.services.context import CLI

BASE = "http://127.0.0.1:8000"


def bare(client: Client) -> httpx.AsyncClient:
    """A client on the same app with no cookie and no headers."""
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def admin_client(client_factory: ClientFactory, **settings: Any) -> Client:
    """A cookie session of root@example.com, who holds the admin role."""
    client = await client_factory(**settings)
    await client.container.accounts.register(
        email="root@example.com", password=PASSWORD, roles=["admin"], ctx=CLI, self_service=False
    )
    await client.login("root@example.com")
    return client


async def api_key(client: Client, scopes: list[str]) -> str:
    response = await client.post("/v1/api-keys", json={"name": "k", "scopes": scopes})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


async def hmac_signer(client: Client, clock: ManualClock, scopes: list[str]) -> HttpSignatureAuth:
    response = await client.post(
        "/v1/signing-keys", json={"name": "svc", "algorithm": "hmac-sha256", "scopes": scopes}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return HttpSignatureAuth(body["signing_key"]["key_id"], body["secret"], now=clock.now)


async def token_login(anon: httpx.AsyncClient, email: str = "alice@example.com") -> Any:
    response = await anon.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def oauth_client(
    client: Client, scopes: str = "reports:read", *, opaque: bool = False
) -> tuple[str, str]:
    created = await client.container.clients.create(
        name="reports", scopes=scopes, token_format="opaque" if opaque else "jwt", ctx=CLI
    )
    return created.client.id, created.secret


async def client_token(
    anon: httpx.AsyncClient, client_id: str, secret: str, **form: str
) -> httpx.Response:
    return await anon.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic(client_id, secret),
    )


@pytest.fixture
async def alice(client_factory: ClientFactory) -> Client:
    """A cookie session of alice, a plain user."""
    client = await client_factory()
    await client.register()
    await client.login()
    return client


ROLE_SCOPES = {
    "user": ["profile", "sessions", "api-keys", "realtime", "channel:news"],
    "admin": ["admin", "realtime:publish", "realtime:presence"],
    "newsroom": ["channel:sports"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``watchword serve`` process for the black-box socket tests."""
    srv = make_server(tmp_path_factory.mktemp("security"), role_scopes=ROLE_SCOPES)
    srv.start()
    srv.create_user("admin@example.com", "admin")
    yield srv
    srv.stop()
