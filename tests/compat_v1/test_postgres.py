"""The surface on PostgreSQL: the same walk, and input PostgreSQL would choke on (NUL)."""

from __future__ import annotations

import base64
import uuid

from tests.compat_v1.conftest import CompatFactory, cookie, login
from watchword.services.context import CLI


async def test_session_db_auth_on_postgresql(
    compat_factory: CompatFactory, postgres_url: str
) -> None:
    client = await compat_factory("session_db_auth", duration="60", database_url=postgres_url)
    email = f"pg-{uuid.uuid4().hex[:8]}@hbtn.io"
    await client.container.accounts.register(
        email=email, password="fake pwd", ctx=CLI, self_service=False
    )
    session_id = await login(client, email, "fake pwd")
    me = await client.get("/api/v1/users/me", headers=cookie(session_id))
    assert me.status_code == 200 and me.json()["email"] == email
    auth = cookie(session_id)
    created = await client.post(
        "/api/v1/users",
        json={"email": f"new-{email}", "password": "long enough", "last_name": "Dylan"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    duplicate = await client.post(
        "/api/v1/users", json={"email": f"NEW-{email}", "password": "long enough"}, headers=auth
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["error"].startswith("Can't create User: ")
    # NUL and other odd input never reach PostgreSQL as a query
    for path in ("/api/v1/users/%00", "/api/v1/users/a%00b"):
        response = await client.get(path, headers=auth)
        assert response.status_code == 404 and response.json() == {"error": "Not found"}
    nul_login = await client.post(
        "/api/v1/auth_session/login", data={"email": "a\x00@hbtn.io", "password": "x"}
    )
    assert nul_login.status_code == 404
    assert nul_login.json() == {"error": "no user found for this email"}
    nul_cookie = await client.get("/api/v1/users/me", headers={"Cookie": "_my_session_id=a\x00b"})
    assert nul_cookie.status_code == 403
    nul_json = await client.post(
        "/api/v1/users",
        content=b'{"email": "x\\u0000@hbtn.io", "password": "long enough"}',
        headers={"Content-Type": "application/json", **auth},
    )
    assert nul_json.status_code == 400
    logout = await client.delete("/api/v1/auth_session/logout", headers=auth)
    assert logout.status_code == 200 and logout.json() == {}
    assert (await client.get("/api/v1/users/me", headers=auth)).status_code == 403


async def test_basic_auth_on_postgresql(compat_factory: CompatFactory, postgres_url: str) -> None:
    client = await compat_factory("basic_auth", database_url=postgres_url)
    email = f"pg-{uuid.uuid4().hex[:8]}@hbtn.io"
    await client.container.accounts.register(
        email=email, password="H0lberton:School:98!", ctx=CLI, self_service=False
    )
    token = base64.b64encode(f"{email}:H0lberton:School:98!".encode()).decode()
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Basic {token}"})
    assert me.status_code == 200 and me.json()["email"] == email
    nul = base64.b64encode(f"{email}\x00:x".encode()).decode()
    response = await client.get("/api/v1/users", headers={"Authorization": f"Basic {nul}"})
    assert response.status_code == 403 and response.json() == {"error": "Forbidden"}


async def test_names_with_nul_are_refused_before_postgresql(
    compat_factory: CompatFactory, postgres_url: str
) -> None:
    client = await compat_factory(None, open_mode="open,exercise", database_url=postgres_url)
    email = f"pg-{uuid.uuid4().hex[:8]}@hbtn.io"
    response = await client.post(
        "/api/v1/users",
        content=(
            b'{"email": "' + email.encode() + b'", "password": "long enough",'
            b' "first_name": "a\\u0000b"}'
        ),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("Can't create User: first_name")
    created = await client.post("/api/v1/users", json={"email": email, "password": "long enough"})
    user_id = created.json()["id"]
    update = await client.put(
        f"/api/v1/users/{user_id}",
        content=b'{"last_name": "a\\u0000b"}',
        headers={"Content-Type": "application/json"},
    )
    assert update.status_code == 400 and update.json() == {"error": "Wrong format"}
