"""Machines beyond the happy path: PostgreSQL end to end, a store that is down (fail closed),
roles from a TOML file, and the CLI acting on a running server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, TEST_SECRET_KEY
from tests.machines.conftest import make_api_key
from watchword import cli
from watchword.config import Settings
from watchword.domain.errors import StoreUnavailable


def bare(client: Client) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


@pytest.mark.postgres
async def test_api_key_end_to_end_on_postgres(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client = await client_factory(database_url=postgres_url)
    email = f"pg-{uuid.uuid4().hex[:8]}@example.com"
    await client.register(email)
    await client.login(email)
    created = await make_api_key(client, ["profile"])
    async with bare(client) as anon:
        me = await anon.get("/v1/me", headers={"Authorization": f"Bearer {created['key']}"})
        assert me.status_code == 200 and me.json()["user"]["email"] == email
        assert (await client.delete(f"/v1/api-keys/{created['api_key']['id']}")).status_code == 200
        assert (await anon.get("/v1/me", headers={"X-API-Key": created["key"]})).status_code == 401


async def test_store_down_fails_closed(
    user_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = (await make_api_key(user_client))["key"]
    c = user_client.container

    async def down(*_: Any, **__: Any) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(c.machines.api_keys, "get_by_public_id", down)
    async with bare(user_client) as anon:
        response = await anon.get("/v1/me", headers={"X-API-Key": key})
        assert response.status_code == 503
        assert response.json()["error"] == "service_unavailable"
    monkeypatch.setattr(c.machines.api_keys, "create", down)
    created = await user_client.post("/v1/api-keys", json={"name": "x", "scopes": "profile"})
    assert created.status_code == 503 and "key" not in created.json()
    monkeypatch.setattr(c.machines.clients, "get", down)
    async with bare(user_client) as anon:
        token = await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "wwc_" + "0" * 24,
                "client_secret": "A" * 43,
            },
        )
    assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable"


def test_roles_file(tmp_path: Path) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text('[roles]\nuser = ["profile", "api-keys"]\nops = ["admin", "sessions"]\n')
    settings = Settings(roles_file=str(roles), secret_key=TEST_SECRET_KEY)
    assert settings.role_scopes == {"user": ["api-keys", "profile"], "ops": ["admin", "sessions"]}
    for bad in (
        "[roles]\nuser = 'profile'\n",
        "[other]\n",
        '[roles]\n"Bad Role" = ["x"]\n',
        "[roles",
    ):
        roles.write_text(bad)
        with pytest.raises(ValidationError):
            Settings(roles_file=str(roles))
    with pytest.raises(ValidationError):
        Settings(roles_file=str(tmp_path / "missing.toml"))


async def test_roles_file_drives_scopes(client_factory: ClientFactory, tmp_path: Path) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text('[roles]\nuser = ["profile", "api-keys"]\n')
    client = await client_factory(roles_file=str(roles))
    await client.register()
    await client.login()
    assert (await client.get("/v1/sessions")).status_code == 403  # "sessions" not granted
    refused = await client.post("/v1/api-keys", json={"name": "x", "scopes": "sessions"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert (await make_api_key(client, "profile"))["api_key"]["scopes"] == ["profile"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_cli_acts_on_a_running_server(
    client_factory: ClientFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await client_factory()
    await client.register()
    settings = client.container.settings
    monkeypatch.setenv("WATCHWORD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY", TEST_SECRET_KEY)
    # The CLI runs its own event loop, as the real command does: run it in a thread.
    import asyncio

    async def command(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, capsys, *argv)

    status, out, _ = await command(
        "api-keys", "create", "--email", "alice@example.com", "--scopes", "profile", "--json"
    )
    assert status == 0, out
    import json

    created = json.loads(out)
    key = created["key"]
    async with bare(client) as anon:
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        status, out, _ = await command("api-keys", "list", "--email", "alice@example.com", "--json")
        assert status == 0 and key not in out and json.loads(out)[0]["id"] == created["id"]
        status, _, _ = await command("api-keys", "revoke", created["id"])
        assert status == 0
        await client.container.control.poll_once()  # the server's next control-feed poll
        assert (await anon.get("/v1/me", headers={"X-API-Key": key})).status_code == 401

        status, out, err = await command(
            "api-keys", "create", "--email", "alice@example.com", "--scopes", "admin"
        )
        assert status == 1 and "Scope not allowed" in err

        status, out, _ = await command(
            "clients", "create", "--name", "batch", "--scopes", "reports:read", "--opaque", "--json"
        )
        assert status == 0
        registered = json.loads(out)
        token = await anon.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(registered["client_id"], registered["client_secret"]),
        )
        assert token.status_code == 200 and token.json()["access_token"].startswith("ww_at_")
        status, _, _ = await command("clients", "disable", registered["client_id"])
        assert status == 0
        await client.container.control.poll_once()
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert (await anon.get("/v1/me", headers=bearer)).status_code == 401

        status, out, _ = await command(
            "signing-keys",
            "create",
            "--email",
            "alice@example.com",
            "--scopes",
            "profile",
            "--json",
        )
        assert status == 0 and json.loads(out)["secret"]
    assert PASSWORD
