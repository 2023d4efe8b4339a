"""Free-text labels with control characters are refused before they reach any store."""

import pytest

from tests.conftest import Client, ClientFactory


@pytest.mark.parametrize("field", ["first_name", "last_name"])
async def test_a_name_with_a_nul_is_refused_and_nothing_is_created(
    client: Client, field: str
) -> None:
    body = {"email": "nul@example.com", "password": "correct horse battery", field: "a\x00b"}
    response = await client.post("/v1/users", json=body)
    assert response.status_code == 400
    assert "control characters" in response.json()["message"]
    assert await client.container.db.users.get_by_email("nul@example.com") is None


async def test_a_device_name_with_a_control_character_is_refused(client: Client) -> None:
    await client.register()
    response = await client.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": "correct horse battery staple",
            "device_name": "phone\x1b[31m",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_labels_are_refused_on_postgresql_too(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client = await client_factory(database_url=postgres_url)
    body = {
        "email": "nul-pg@example.com",
        "password": "correct horse battery",
        "first_name": "\x00",
    }
    response = await client.post("/v1/users", json=body)
    assert response.status_code == 400
