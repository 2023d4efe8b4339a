"""Failures on the surface: a store down at start or mid-request, an unexpected error."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.compat_v1.conftest import (
    SESSION_EMAIL,
    SESSION_PASSWORD,
    CompatFactory,
    cookie,
    login,
    make_user,
)
from tests.conftest import BASE_URL, AppFactory
from watchword.domain.errors import StoreUnavailable
from watchword.domain.sessions import Session
from watchword.web import compat_v1

SERVER_ERROR = (
    "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable "
    "to complete your request. Either the server is overloaded or there is an error in the "
    "application.</p>\n"
)


async def test_a_store_down_at_start_does_not_stop_the_server_and_the_revocation_follows(
    app_factory: AppFactory,
    compat_factory: CompatFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = await compat_factory("session_auth")
    await make_user(before.container, SESSION_EMAIL, SESSION_PASSWORD)
    stale = await login(before)
    user = await before.container.accounts.find_user(SESSION_EMAIL)

    app, container = await app_factory()
    real = container.db.sessions.revoke_kind
    calls = 0

    async def flaky(kind: str, reason: str, now: object, *, origin: str) -> list[Session]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable()
        return await real(kind, reason, now, origin=origin)  # type: ignore[arg-type]

    monkeypatch.setattr(container.db.sessions, "revoke_kind", flaky)
    monkeypatch.setattr(compat_v1, "RETRY_INTERVAL", 0.01)
    with caplog.at_level(logging.WARNING, logger="watchword.compat_v1"):
        async with app.router.lifespan_context(app):
            assert any("store unavailable at start" in r.getMessage() for r in caplog.records)
            for _ in range(500):
                if not await container.sessions.list_live(user.id):
                    break
                await asyncio.sleep(0.01)
            assert await container.sessions.list_live(user.id) == []
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE_URL
            ) as client:
                response = await client.get("/api/v1/users/me", headers=cookie(stale))
                assert response.status_code == 403
    assert calls == 2


async def test_a_store_down_during_session_checks_is_503(
    compat_factory: CompatFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await compat_factory("session_db_auth")
    await make_user(client.container, SESSION_EMAIL, SESSION_PASSWORD)
    session_id = await login(client)
    client.container.session_cache.clear()

    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(client.container.db.sessions, "get_by_secret_hash", down)
    response = await client.get("/api/v1/users/me", headers=cookie(session_id))
    assert response.status_code == 503
    assert response.json() == {"error": "Service unavailable"}
    monkeypatch.setattr(client.container.db.users, "get_by_email", down)
    login_down = await client.post(
        "/api/v1/auth_session/login", data={"email": SESSION_EMAIL, "password": SESSION_PASSWORD}
    )
    assert login_down.status_code == 503
    assert login_down.json() == {"error": "Service unavailable"}
    assert "set-cookie" not in login_down.headers
    monkeypatch.undo()
    assert (await client.get("/api/v1/users/me", headers=cookie(session_id))).status_code == 200


async def test_an_unexpected_error_is_werkzeugs_500_page(
    compat_factory: CompatFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await compat_factory(None, open_mode="open")

    async def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(client.container.db.users, "count", broken)
    response = await client.get("/api/v1/stats")
    assert response.status_code == 500
    assert response.text == SERVER_ERROR
    assert response.headers["access-control-allow-origin"] == "*"
    assert (await client.get("/api/v1/status")).status_code == 200


async def test_open_mode_registration_follows_the_server_setting(
    compat_factory: CompatFactory,
) -> None:
    client = await compat_factory(None, open_mode="open", open_registration=False)
    response = await client.post(
        "/api/v1/users", json={"email": "a@hbtn.io", "password": "long enough"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Can't create User: Registration is closed on this server."}
