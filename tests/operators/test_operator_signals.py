"""What an operator is told: a JSON route sent another content type says what to send, a
surface that is not served says why in the log, and an unreachable Redis is named."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import ClientFactory


async def test_a_json_route_given_a_form_says_to_send_json(client_factory: ClientFactory) -> None:
    client = await client_factory()
    response = await client.post("/v1/users", data={"email": "a@example.com", "password": "x"})
    assert response.status_code == 422
    assert response.json()["error"] == "content_type_not_json"
    assert "Content-Type: application/json" in response.json()["message"]


async def test_an_unserved_compat_surface_says_why_once(
    client_factory: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUTH_TYPE", raising=False)
    monkeypatch.delenv("WATCHWORD_COMPAT_V1", raising=False)
    client = await client_factory()
    with caplog.at_level(logging.WARNING, logger="watchword.web"):
        assert (await client.get("/api/v1/status")).status_code == 404
        assert (await client.get("/api/v1/users")).status_code == 404
    lines = [r.getMessage() for r in caplog.records if "/api/v1" in r.getMessage()]
    assert len(lines) == 1
    assert "AUTH_TYPE" in lines[0]


async def test_an_unreachable_redis_is_named_at_start_and_in_readyz(
    client_factory: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = "redis://:hunter2@127.0.0.1:1/0"
    with caplog.at_level(logging.WARNING, logger="watchword.cluster"):
        client = await client_factory(
            redis_url=url, redis_connect_timeout=0.2, redis_socket_timeout=0.2
        )
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "watchword.cluster")
    assert "redis://:***@127.0.0.1:1/0" in said and "unreachable" in said
    assert "hunter2" not in said
    ready = await client.get("/readyz", params={"verbose": 1})
    assert ready.status_code == 503
    redis = ready.json()["checks"]["redis"]
    assert redis["url"] == "redis://:***@127.0.0.1:1/0"
    assert redis["ok"] is False and redis["error"]
