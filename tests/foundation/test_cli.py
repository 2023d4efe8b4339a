"""The ``watchword`` command, run as a process against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.foundation.procs import Result, Server, cli_env, run_cli
from tests.helpers import PASSWORD, TEST_SECRET_KEY
from watchword.config import Settings
from watchword.services.container import Container
from watchword.services.context import RequestContext


def ok(result: Result) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: Result, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("watchword: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


async def sign_in(database_url: str, email: str, device: str) -> str:
    """A session made in this process (as a browser sign-in would), for the CLI to see."""
    container = Container(Settings(database_url=database_url, secret_key=TEST_SECRET_KEY))
    try:
        signin = await container.accounts.login(
            email=email,
            password=PASSWORD,
            device_name=device,
            ctx=RequestContext.of("198.51.100.4", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        )
        return signin.session.id
    finally:
        await container.db.close()


async def test_cli_manages_users_sessions_and_the_audit_trail(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    env = cli_env(url)

    async def cli(*args: str, stdin: str | None = None) -> Result:
        return await run_cli(*args, env=env, cwd=tmp_path, stdin=stdin)

    upgraded = ok(await cli("db", "upgrade"))
    assert upgraded.splitlines()[0].split() == ["STATUS", "DATABASE"]
    assert "upgraded" in upgraded
    created = ok(
        await cli(
            "users",
            "create",
            "--email",
            " Alice@Example.com",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    )
    assert created.splitlines()[0].split() == ["ID", "EMAIL", "ROLES", "DISABLED", "CREATED_AT"]
    assert "alice@example.com" in created
    bob = json.loads(
        ok(
            await cli(
                "users",
                "create",
                "--email",
                "bob@example.com",
                "--password-stdin",
                "--role",
                "ops",
                "--json",
                stdin=PASSWORD + "\n",
            )
        )
    )
    assert bob["email"] == "bob@example.com" and bob["roles"] == ["ops"]
    assert "password" not in json.dumps(bob)

    table = ok(await cli("users", "list"))
    assert "alice@example.com" in table and "bob@example.com" in table
    listed = json.loads(ok(await cli("users", "list", "--json")))
    assert [u["email"] for u in listed] == ["alice@example.com", "bob@example.com"]

    roles = json.loads(
        ok(await cli("users", "set-roles", "BOB@example.com", "admin", "ops", "--json"))
    )
    assert roles["roles"] == ["admin", "ops"]

    laptop = await sign_in(url, "alice@example.com", "laptop")
    phone = await sign_in(url, "alice@example.com", "phone")
    sessions_table = ok(await cli("sessions", "list", "--email", "alice@example.com"))
    assert sessions_table.splitlines()[0].split()[:3] == ["ID", "KIND", "DEVICE"]
    assert laptop in sessions_table and phone in sessions_table
    assert "Firefox on Linux" in sessions_table
    sessions = json.loads(
        ok(await cli("sessions", "list", "--email", "alice@example.com", "--json"))
    )
    assert {s["id"] for s in sessions} == {laptop, phone}
    assert {s["device"]["name"] for s in sessions} == {"laptop", "phone"}

    revoked = json.loads(ok(await cli("sessions", "revoke", phone, "--json")))
    assert revoked == {
        "id": phone,
        "user_id": listed[0]["id"],
        "status": "revoked",
    }

    disabled = json.loads(ok(await cli("users", "disable", "alice@example.com", "--json")))
    assert disabled["disabled"] is True and disabled["revoked_sessions"] == 1
    assert (
        json.loads(ok(await cli("sessions", "list", "--email", "alice@example.com", "--json")))
        == []
    )

    tail = json.loads(ok(await cli("audit", "tail", "--json", "--limit", "50")))
    types = [e["type"] for e in tail]
    for expected in (
        "user.registered",
        "login.succeeded",
        "session.revoked",
        "admin.user_disabled",
    ):
        assert expected in types
    assert all(e["user_agent"] == "watchword-cli" for e in tail if e["type"] == "session.revoked")
    text = ok(await cli("audit", "tail", "--limit", "2"))
    assert text.splitlines()[0].split()[:3] == ["ID", "AT", "TYPE"] and len(text.splitlines()) == 3
    assert PASSWORD not in text


async def test_cli_bad_input_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    env = cli_env(url)
    fresh = cli_env(f"sqlite+aiosqlite:///{tmp_path}/fresh.db")
    one_line_error(await run_cli("users", "list", env=fresh, cwd=tmp_path), "watchword db upgrade")
    ok(await run_cli("db", "upgrade", env=env, cwd=tmp_path))
    ok(
        await run_cli(
            "users",
            "create",
            "--email",
            "alice@example.com",
            "--password-stdin",
            env=env,
            cwd=tmp_path,
            stdin=PASSWORD + "\n",
        )
    )
    cases: list[tuple[tuple[str, ...], str | None, dict[str, str], tuple[str, ...]]] = [
        (
            ("users", "create", "--email", "not-an-email", "--password-stdin"),
            PASSWORD,
            {},
            ("email",),
        ),
        (
            ("users", "create", "--email", "b@example.com", "--password-stdin"),
            "short",
            {},
            ("at least 8",),
        ),
        (
            ("users", "create", "--email", "ALICE@example.com", "--password-stdin"),
            PASSWORD,
            {},
            ("already exists",),
        ),
        (("users", "create", "--email", "c@example.com"), None, {}, ("--password-stdin",)),
        (
            ("users", "create", "--email", "c@example.com", "--password-stdin"),
            None,
            {},
            ("no password",),
        ),
        (("users", "disable", "nobody@example.com"), None, {}, ("No user",)),
        (("users", "set-roles", "alice@example.com", "Bad Role"), None, {}, ("Invalid role",)),
        (("sessions", "revoke", str(uuid.uuid4())), None, {}, ("No such session",)),
        (
            ("users", "list"),
            None,
            {"WATCHWORD_SESSION_IDLE_TIMEOUT": "soon"},
            ("WATCHWORD_SESSION_IDLE_TIMEOUT",),
        ),
        (
            ("users", "list"),
            None,
            {"WATCHWORD_LOGIN_RATE_LIMIT_IP": "lots"},
            ("WATCHWORD_LOGIN_RATE_LIMIT_IP",),
        ),
        (
            ("users", "list"),
            None,
            {"WATCHWORD_DATABASE_URL": "mysql://x"},
            ("WATCHWORD_DATABASE_URL",),
        ),
        (("users", "list"), None, {"WATCHWORD_ROLE_SCOPES": "{not json"}, ("role_scopes",)),
        (
            ("users", "list"),
            None,
            {
                "WATCHWORD_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/x",
                "WATCHWORD_DB_TIMEOUT": "1",
            },
            ("unavailable",),
        ),
    ]

    async def check(
        args: tuple[str, ...], stdin: str | None, extra: dict[str, str], needles: tuple[str, ...]
    ) -> None:
        result = await run_cli(
            *args, env={**env, **extra}, cwd=tmp_path, stdin=None if stdin is None else stdin + "\n"
        )
        one_line_error(result, *needles)

    for start in range(0, len(cases), 4):
        await asyncio.gather(*(check(*case) for case in cases[start : start + 4]))
    # None of it changed anything.
    users = json.loads(ok(await run_cli("users", "list", "--json", env=env, cwd=tmp_path)))
    assert [(u["email"], u["roles"], u["disabled"]) for u in users] == [
        ("alice@example.com", [], False)
    ]


@pytest.mark.postgres
async def test_cli_against_postgresql(postgres_url: str, tmp_path: Path) -> None:
    env = cli_env(postgres_url)
    ok(await run_cli("db", "upgrade", env=env, cwd=tmp_path))
    email = f"pg-{uuid.uuid4().hex[:8]}@example.com"
    created = json.loads(
        ok(
            await run_cli(
                "users",
                "create",
                "--email",
                email,
                "--password-stdin",
                "--json",
                env=env,
                cwd=tmp_path,
                stdin=PASSWORD + "\n",
            )
        )
    )
    session_id = await sign_in(postgres_url, email, "pg laptop")
    listed = json.loads(
        ok(await run_cli("users", "list", "--json", "--limit", "1000", env=env, cwd=tmp_path))
    )
    assert created["id"] in {u["id"] for u in listed}
    sessions = json.loads(
        ok(await run_cli("sessions", "list", "--email", email, "--json", env=env, cwd=tmp_path))
    )
    assert [s["id"] for s in sessions] == [session_id]
    ok(await run_cli("sessions", "revoke", session_id, env=env, cwd=tmp_path))
    one_line_error(
        await run_cli("sessions", "revoke", session_id, env=env, cwd=tmp_path), "No such session"
    )
    disabled = json.loads(
        ok(await run_cli("users", "disable", email, "--json", env=env, cwd=tmp_path))
    )
    assert disabled["disabled"] is True
    # No master key file on PostgreSQL: the key must come from the environment.
    without_key = {k: v for k, v in env.items() if k != "WATCHWORD_SECRET_KEY"}
    one_line_error(
        await run_cli("users", "list", env=without_key, cwd=tmp_path), "WATCHWORD_SECRET_KEY"
    )


async def test_a_revocation_from_the_cli_reaches_a_running_server(tmp_path: Path) -> None:
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path}/live.db")
    ok(await run_cli("db", "upgrade", env=env, cwd=tmp_path))
    ok(
        await run_cli(
            "users",
            "create",
            "--email",
            "alice@example.com",
            "--password-stdin",
            env=env,
            cwd=tmp_path,
            stdin=PASSWORD + "\n",
        )
    )
    server = Server(env, tmp_path)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as browser:
            await wait_ready(browser)
            login = await browser.post(
                "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            session_id = login.json()["session"]["id"]
            assert (await browser.get("/v1/me")).status_code == 200  # now in the node's cache
            ok(await run_cli("sessions", "revoke", session_id, env=env, cwd=tmp_path))
            for _ in range(200):  # the server polls the control feed every 0.2 s here
                response = await browser.get("/v1/me")
                if response.status_code == 401:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 401
            assert response.json()["error"] == "session_revoked"
    finally:
        await server.stop()


async def wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the server never became ready")
