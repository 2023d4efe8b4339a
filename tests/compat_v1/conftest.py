"""Apps serving /api/v1 under a chosen AUTH_TYPE, and users made the Watchword way."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Client, ClientFactory
from watchword.domain.users import User
from watchword.services.container import Container
from watchword.services.context import CLI

SESSION_NAME = "_my_session_id"
BOB_EMAIL = "bob@hbtn.io"
BOB_PASSWORD = "H0lbertonSchool98!"
BOB_BASIC = "Ym9iQGhidG4uaW86SDBsYmVydG9uU2Nob29sOTgh"  # the exercise's own header value
BOB100_EMAIL = "bob100@hbtn.io"
BOB100_PASSWORD = "H0lberton:School:98!"
BOB100_BASIC = "Ym9iMTAwQGhidG4uaW86SDBsYmVydG9uOlNjaG9vbDo5OCE="
SESSION_EMAIL = "bobsession@hbtn.io"
SESSION_PASSWORD = "fake pwd"

CompatFactory = Callable[..., Awaitable[Client]]
COMPAT_ENV = ("AUTH_TYPE", "SESSION_NAME", "SESSION_DURATION", "WATCHWORD_COMPAT_V1")


def basic(email: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def compat_factory(client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> CompatFactory:
    """A client on an app whose environment has the exercise's variables set as given."""

    async def make(
        auth_type: str | None,
        *,
        session_name: str | None = SESSION_NAME,
        duration: str | None = None,
        open_mode: str | None = None,
        **overrides: Any,
    ) -> Client:
        for name in COMPAT_ENV:
            monkeypatch.delenv(name, raising=False)
        values = {
            "AUTH_TYPE": auth_type,
            "SESSION_NAME": session_name,
            "SESSION_DURATION": duration,
            "WATCHWORD_COMPAT_V1": open_mode,
        }
        for name, value in values.items():
            if value is not None:
                monkeypatch.setenv(name, value)
        return await client_factory(**overrides)

    return make


async def make_user(
    container: Container,
    email: str,
    password: str,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
) -> User:
    """A user as any Watchword admin path makes it (argon2id, normalised email)."""
    return await container.accounts.register(
        email=email,
        password=password,
        first_name=first_name,
        last_name=last_name,
        ctx=CLI,
        self_service=False,
    )


async def login(
    client: Client, email: str = SESSION_EMAIL, password: str = SESSION_PASSWORD
) -> str:
    """Sign in on /api/v1 and return the session id from Set-Cookie (not kept by the client)."""
    response = await client.post(
        "/api/v1/auth_session/login", data={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    assert name == SESSION_NAME
    session_id, _, attributes = rest.partition("; ")
    assert attributes == "Path=/"
    client.cookies.clear()
    return session_id


def cookie(session_id: str, name: str = SESSION_NAME) -> dict[str, str]:
    return {"Cookie": f"{name}={session_id}"}
