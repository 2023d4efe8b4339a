"""A password reset on one node ends the user's sessions on another (PostgreSQL + Redis)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.cluster.conftest import eventually
from tests.cluster.test_two_apps import email, node, same_browser
from tests.conftest import ClientFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def redis_prefix() -> str:
    """Keys and channels of this test's two nodes only."""
    return f"ww-reset-{uuid.uuid4().hex[:8]}"


async def test_a_reset_on_one_node_ends_the_session_and_its_sockets_on_another(
    client_factory: ClientFactory, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    one = await node(client_factory, postgres_url, redis_url, redis_prefix)
    two = await node(client_factory, postgres_url, redis_url, redis_prefix)
    address = email()
    await one.register(address)
    await one.login(address)
    same_browser(one, two)
    me = await two.get("/v1/me")
    assert me.status_code == 200
    session_id = me.json()["session"]["id"]
    # Node two's control plane hears the revocation: its gateway (subscribed to the same
    # events) closes the session's sockets on it.
    heard: list[str] = []

    async def watch(message: dict[str, Any]) -> None:
        if message.get("type") == "session.revoked":
            heard.append(str(message.get("session_id")))

    two.container.control.on_event(watch)

    from watchword.services.context import CLI

    mail = await one.container.lifecycle.send_reset(address, CLI, actor_id="test")
    token = mail.text.split("token=", 1)[1].split()[0]
    done = await one.post(
        "/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "a brand new passphrase 42"},
    )
    assert done.status_code == 200, done.text

    async def refused_on_two() -> bool:
        return (await two.get("/v1/me")).status_code == 401

    await eventually(refused_on_two)
    assert session_id in two.container.control.revoked
    await eventually(lambda: _async(session_id in heard))


async def _async(value: bool) -> bool:
    return value
