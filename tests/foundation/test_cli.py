"""The ``watchword`` command, run as a process against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.foundation.procs import Result, Server, cli_env, run_cli
from tests.helpers import PASSWORD, TEST_SECRET_KEY
from watchword.cli import main
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
                "service",
                "--json",
                stdin=PASSWORD + "\n",
            )
        )
    )
    assert bob["email"] == "bob@example.com" and bob["roles"] == ["service"]
    assert "password" not in json.dumps(bob)

    # Independent reads run side by side: process start-up is most of a CLI call's cost.
    table_result, json_result = await asyncio.gather(
        cli("users", "list"), cli("users", "list", "--json")
    )
    table = ok(table_result)
    assert "alice@example.com" in table and "bob@example.com" in table
    listed = json.loads(ok(json_result))
    assert [u["email"] for u in listed] == ["alice@example.com", "bob@example.com"]

    roles = json.loads(
        ok(await cli("users", "set-roles", "BOB@example.com", "admin", "service", "--json"))
    )
    assert roles["roles"] == ["admin", "service"]

    laptop = await sign_in(url, "alice@example.com", "laptop")
    phone = await sign_in(url, "alice@example.com", "phone")
    table_result, json_result = await asyncio.gather(
        cli("sessions", "list", "--email", "alice@example.com"),
        cli("sessions", "list", "--email", "alice@example.com", "--json"),
    )
    sessions_table = ok(table_result)
    assert sessions_table.splitlines()[0].split()[:3] == ["ID", "KIND", "DEVICE"]
    assert laptop in sessions_table and phone in sessions_table
    assert "Firefox on Linux" in sessions_table
    sessions = json.loads(ok(json_result))
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

    tail_result, text_result = await asyncio.gather(
        cli("audit", "tail", "--json", "--limit", "50"), cli("audit", "tail", "--limit", "2")
    )
    tail = json.loads(ok(tail_result))
    types = [e["type"] for e in tail]
    for expected in (
        "user.registered",
        "login.succeeded",
        "session.revoked",
        "admin.user_disabled",
    ):
        assert expected in types
    assert all(e["user_agent"] == "watchword-cli" for e in tail if e["type"] == "session.revoked")
    text = ok(text_result)
    assert text.splitlines()[0].split()[:3] == ["ID", "AT", "TYPE"] and len(text.splitlines()) == 3
    assert PASSWORD not in text


async def test_cli_bad_input_is_a_one_line_error(tmp_path: Path) -> None:
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    ok(await run_cli("db", "upgrade", env=env, cwd=tmp_path))
    # The real command, for a bad value, an unknown id and a bad setting (the other cases run
    # in-process below: process start-up is most of the cost of a CLI test).
    results = await asyncio.gather(
        run_cli(
            "users",
            "create",
            "--email",
            "not-an-email",
            "--password-stdin",
            env=env,
            cwd=tmp_path,
            stdin=PASSWORD + "\n",
        ),
        run_cli("sessions", "revoke", str(uuid.uuid4()), env=env, cwd=tmp_path),
        run_cli(
            "users", "list", env={**env, "WATCHWORD_SESSION_IDLE_TIMEOUT": "soon"}, cwd=tmp_path
        ),
    )
    one_line_error(results[0], "email")
    one_line_error(results[1], "No such session")
    one_line_error(results[2], "WATCHWORD_SESSION_IDLE_TIMEOUT")
    assert json.loads(ok(await run_cli("users", "list", "--json", env=env, cwd=tmp_path))) == []


CASES: list[tuple[tuple[str, ...], str | None, dict[str, str], tuple[str, ...]]] = [
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
    (("users", "set-roles", "nobody@example.com", "admin"), None, {}, ("No user",)),
    (
        ("users", "set-roles", "alice@example.com", "Bad Role"),
        None,
        {},
        ("unknown role 'Bad Role'", "admin, service, user"),
    ),
    (("sessions", "list", "--email", "nobody@example.com"), None, {}, ("No user",)),
    (
        ("users", "list"),
        None,
        {"WATCHWORD_LOGIN_RATE_LIMIT_IP": "lots"},
        ("WATCHWORD_LOGIN_RATE_LIMIT_IP",),
    ),
    (("users", "list"), None, {"WATCHWORD_DATABASE_URL": "mysql://x"}, ("WATCHWORD_DATABASE_URL",)),
    (("users", "list"), None, {"WATCHWORD_ROLE_SCOPES": "{not json"}, ("role_scopes",)),
    (
        ("users", "list"),
        None,
        {"WATCHWORD_OPEN_REGISTRATION": "perhaps"},
        ("WATCHWORD_OPEN_REGISTRATION",),
    ),
    (
        ("users", "list"),
        None,
        {
            "WATCHWORD_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/x",
            "WATCHWORD_DB_TIMEOUT": "1",
        },
        ("PostgreSQL database postgresql+asyncpg://x@127.0.0.1:1/x", "Connect call failed"),
    ),
    (
        ("users", "list"),
        None,
        {
            "WATCHWORD_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/x",
            "WATCHWORD_SECRET_KEY": "",
        },
        ("WATCHWORD_SECRET_KEY",),
    ),
]


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite file with alice, and the CLI's environment pointing at it."""
    url = f"sqlite+aiosqlite:///{tmp_path}/inproc.db"
    for key, value in cli_env(url).items():
        if key.startswith("WATCHWORD_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "create", "--email", "alice@example.com", "--password-stdin"]) == 0
    return url


@pytest.mark.parametrize(("args", "stdin", "extra", "needles"), CASES)
def test_cli_errors_in_process(
    cli_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    stdin: str | None,
    extra: dict[str, str],
    needles: tuple[str, ...],
) -> None:
    for key, value in extra.items():
        monkeypatch.setenv(key, value.replace("{tmp}", str(tmp_path)))
    monkeypatch.setattr("sys.stdin", io.StringIO("" if stdin is None else stdin + "\n"))
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    one_line_error(Result(code, captured.out, captured.err), *needles)
    # Nothing changed.
    for key in extra:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WATCHWORD_DATABASE_URL", cli_database)
    assert main(["users", "list", "--json"]) == 0
    users = json.loads(capsys.readouterr().out)
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
    listed, revoked = await asyncio.gather(
        run_cli("users", "list", "--json", "--limit", "1000", env=env, cwd=tmp_path),
        run_cli("sessions", "revoke", session_id, "--json", env=env, cwd=tmp_path),
    )
    assert created["id"] in {u["id"] for u in json.loads(ok(listed))}
    assert json.loads(ok(revoked))["status"] == "revoked"
    again = json.loads(
        ok(await run_cli("sessions", "revoke", session_id, "--json", env=env, cwd=tmp_path))
    )
    assert again["status"] == "already revoked"


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
