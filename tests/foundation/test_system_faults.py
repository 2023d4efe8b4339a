"""Health, readiness, metrics, and the server with its database down: fail closed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import BASE_URL, POSTGRES_URL, Client, _asyncpg_dsn
from tests.helpers import PASSWORD, ManualClock, eventually, fast_hasher
from watchword.config import Settings
from watchword.domain.audit import AuditType
from watchword.services.container import Container
from watchword.web.app import create_app


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    verbose = (await client.get("/readyz", params={"verbose": 1})).json()
    assert verbose["checks"]["database"] == {"ok": True}
    assert verbose["node"]["id"] == client.container.control.node_id


async def test_metrics_are_prometheus_text(client: Client) -> None:
    await client.register()
    await client.login()
    await client.get("/v1/me")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "watchword_session_cache_entries 1.0" in response.text
    assert "watchword_control_feed_up 1.0" in response.text


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_sign_ins_and_refused_credentials(client: Client) -> None:
    ok = sample("watchword_logins_total", result="succeeded")
    bad = sample("watchword_logins_total", result="invalid_credentials")
    refused = sample("watchword_auth_rejected_total", code="invalid_session")
    await client.register()
    await client.login()
    wrong = {"email": "alice@example.com", "password": "wrong password"}
    assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
    forged = await client.get("/v1/me", headers={"Cookie": "watchword_session=forged"})
    assert forged.status_code == 401
    assert sample("watchword_logins_total", result="succeeded") == ok + 1
    assert sample("watchword_logins_total", result="invalid_credentials") == bad + 1
    assert sample("watchword_auth_rejected_total", code="invalid_session") == refused + 1
    text = (await client.get("/metrics")).text
    assert 'watchword_logins_total{result="succeeded"}' in text


@asynccontextmanager
async def app_client(
    settings: Settings, clock: ManualClock, *, lifespan: bool = True
) -> AsyncIterator[Client]:
    container = Container(settings, clock=clock, hasher=fast_hasher())
    app = create_app(settings, container=container)
    context = app.router.lifespan_context(app)
    if lifespan:
        await context.__aenter__()
    client = Client(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    client.container = container
    try:
        yield client
    finally:
        await client.aclose()
        if lifespan:
            await context.__aexit__(None, None, None)
        else:
            await container.db.close()


async def test_an_unreachable_database_is_503_never_401_or_500(
    settings_factory: Callable[..., Settings], clock: ManualClock
) -> None:
    settings = settings_factory(
        database_url="postgresql+asyncpg://watchword@127.0.0.1:1/nowhere", db_timeout=1.0
    )
    # Requests only (no start-up): the routes themselves must fail closed.
    async with app_client(settings, clock, lifespan=False) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz", params={"verbose": 1})
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["database"]["ok"] is False
        register = await client.post(
            "/v1/users", json={"email": "a@example.com", "password": PASSWORD}
        )
        login = await client.post(
            "/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
        cookie = await client.get("/v1/me", headers={"Cookie": "watchword_session=" + "A" * 43})
        for response in (register, login, cookie):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "service_unavailable"
            assert response.headers["retry-after"] == "1"
            assert "set-cookie" not in response.headers


class Outage:
    """Takes one PostgreSQL database away from its clients, and gives it back."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def begin(self) -> None:
        await self._admin(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    async def end(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
async def outage(postgres_url: str) -> AsyncIterator[tuple[Outage, str]]:
    outage = Outage(f"watchword_outage_{uuid.uuid4().hex[:10]}")
    await outage.create()
    base = postgres_url.rpartition("/")[0]
    try:
        yield outage, f"{base}/{outage.name}"
    finally:
        await outage.end()
        await outage.drop()


@pytest.mark.postgres
async def test_a_database_outage_fails_closed_writes_nothing_and_recovers(
    outage: tuple[Outage, str],
    settings_factory: Callable[..., Settings],
    clock: ManualClock,
) -> None:
    control, url = outage
    settings = settings_factory(database_url=url, db_timeout=2.0)
    migrate = Container(settings, clock=clock, hasher=fast_hasher())
    await migrate.db.upgrade()  # type: ignore[attr-defined]
    await migrate.db.close()
    async with app_client(settings, clock) as client:
        alice = await client.register()
        await client.login()
        assert (await client.get("/v1/me")).status_code == 200
        phone = Client(transport=client._transport, base_url=BASE_URL)
        phone_session = (await phone.login()).json()["session"]["id"]  # not in this node's cache
        before = await client.container.db.audit.tail(limit=100)

        await control.begin()
        calls: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
            ("ready", lambda: client.get("/readyz")),
            (
                "register",
                lambda: client.post(
                    "/v1/users", json={"email": "bob@example.com", "password": PASSWORD}
                ),
            ),
            (
                "login",
                lambda: client.post(
                    "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
                ),
            ),
            ("unknown cookie", lambda: phone.get("/v1/me")),
            ("list", lambda: client.get("/v1/sessions")),
            ("revoke others", lambda: client.post("/v1/sessions/revoke-others")),
            ("revoke one", lambda: client.delete(f"/v1/sessions/{phone_session}")),
            ("sign out", lambda: client.post("/v1/auth/logout")),
            (
                "password",
                lambda: client.post(
                    "/v1/me/password",
                    json={"current_password": PASSWORD, "new_password": "during the outage"},
                ),
            ),
        ]
        for name, call in calls:
            response = await call()
            assert response.status_code == 503, (name, response.text)
            assert "set-cookie" not in response.headers, name
            if name != "ready":
                assert response.json()["error"] == "service_unavailable", name
        await control.end()

        # Back by itself: nothing that answered 503 left anything behind. An outage longer than
        # a poll marks the control feed unhealthy until the poller's next round reads it.
        await eventually(lambda: client.container.control.feed_healthy, "the feed poller back")
        assert (await client.get("/readyz")).status_code == 200
        assert (await phone.get("/v1/me")).status_code == 200
        assert await client.container.accounts.list_users(limit=10, offset=0) != []
        assert await client.container.db.users.get_by_email("bob@example.com") is None
        live = await client.container.db.sessions.list_live(alice["id"], clock.now())
        assert len(live) == 2
        after = await client.container.db.audit.tail(limit=100)
        assert [e.id for e in after] == [e.id for e in before]
        assert not any(e.type == AuditType.PASSWORD_CHANGED for e in after)
        await client.login()  # the old password still works
        register = await client.post(
            "/v1/users", json={"email": "bob@example.com", "password": PASSWORD}
        )
        assert register.status_code == 201
        _: Any = phone
        await phone.aclose()
