"""The `watchword` command as an operator types it, run in-process on SQLite (and PostgreSQL
where the store matters)."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.foundation.procs import cli_env
from tests.foundation.test_cli import sign_in
from tests.helpers import PASSWORD, WATCHWORD
from watchword.cli import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`watchword ARGS` in a fresh folder (no `db upgrade` first): (status, stdout, stderr)."""
    for key, value in cli_env(f"sqlite+aiosqlite:///{tmp_path}/ops.db").items():
        if key.startswith("WATCHWORD_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)

    def call(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def js(result: tuple[int, str, str]) -> Any:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def create(run: Run, email: str, *extra: str) -> Any:
    return js(
        run(
            "users",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--json",
            *extra,
            stdin=PASSWORD + "\n",
        )
    )


def test_version_and_help_on_a_bare_call(run: Run) -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("watchword ")
    code, out, _ = run()
    assert code == 0 and "usage: watchword" in out and "users" in out
    assert "``" not in out


def test_an_option_prefix_is_not_taken_for_the_whole_option(run: Run) -> None:
    code, _, err = run("users", "create", "--email", "a@example.com", "--password", stdin="x\n")
    assert code == 2 and "--password" in err


def test_a_fresh_sqlite_folder_needs_no_upgrade_first(run: Run) -> None:
    assert run("cluster", "check")[0] == 0
    assert create(run, "a@example.com")["email"] == "a@example.com"


def test_a_sqlite_path_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    # A real process: the driver's worker thread fails in it, not in the test runner.
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path}/nope/x.db")
    done = subprocess.run(
        [WATCHWORD, "users", "list"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    err = done.stderr
    assert done.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "SQLite" in err and f"{tmp_path}/nope" in err and "does not exist" in err


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_one_line_with_the_password_masked(
    run: Run, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = postgres_url.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@")
    monkeypatch.setenv("WATCHWORD_DATABASE_URL", base + "/no_such_database_here")
    code, _, err = run("users", "list")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "PostgreSQL" in err and "no_such_database_here" in err and "does not exist" in err
    assert "hunter2" not in err and ":***@" in err


def test_a_terminal_is_asked_the_password_twice(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "something else"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("watchword.commands.users.stdin_is_terminal", lambda: True)
    code, _, err = run("users", "create", "--email", "t@example.com")
    assert code == 0, err
    code, _, err = run("users", "create", "--email", "u@example.com")
    assert code == 1 and "differ" in err
    assert [u["email"] for u in js(run("users", "list", "--json"))] == ["t@example.com"]


def test_roles_are_the_configured_ones_and_none_is_explicit(run: Run) -> None:
    create(run, "a@example.com")
    code, _, err = run("users", "set-roles", "a@example.com", "ops")
    assert code == 1 and "unknown role 'ops'" in err and "admin, service, user" in err
    code, _, err = run("users", "set-roles", "a@example.com")
    assert code == 1 and "--none" in err
    assert js(run("users", "set-roles", "a@example.com", "admin", "--json"))["roles"] == ["admin"]
    assert js(run("users", "set-roles", "a@example.com", "--none", "--json"))["roles"] == []


async def _sessions(run: Run, email: str, n: int, url: str) -> list[str]:
    return [await sign_in(url, email, f"device {i}") for i in range(n)]


def test_set_password_ends_every_session_and_delete_revokes_everything(
    run: Run, tmp_path: Path
) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path}/ops.db"
    create(run, "a@example.com")
    asyncio.run(_sessions(run, "a@example.com", 2, url))
    done = js(
        run(
            "users",
            "set-password",
            "a@example.com",
            "--password-stdin",
            "--json",
            stdin="a brand new passphrase\n",
        )
    )
    assert done["revoked_sessions"] == 2
    assert js(run("sessions", "list", "--email", "a@example.com", "--json")) == []

    js(run("api-keys", "create", "--email", "a@example.com", "--scopes", "profile", "--json"))
    code, _, err = run("users", "delete", "a@example.com")
    assert code == 1 and "--yes" in err
    deleted = js(run("users", "delete", "a@example.com", "--yes", "--json"))
    assert deleted["status"] == "deleted" and deleted["revoked_api_keys"] == 1
    types = [e["type"] for e in js(run("audit", "tail", "--json", "--limit", "100"))]
    assert "credential.revoked" in types and types[-1] == "admin.user_deleted"
    code, _, err = run("users", "list", "--json")
    assert json.loads(_) == [] if code == 0 else False


def test_sessions_across_users_revoke_all_and_already_revoked(run: Run, tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path}/ops.db"
    create(run, "a@example.com")
    create(run, "b@example.com")
    a_ids = asyncio.run(_sessions(run, "a@example.com", 2, url))
    asyncio.run(_sessions(run, "b@example.com", 1, url))
    every = js(run("sessions", "list", "--json"))
    assert len(every) == 3 and {s["email"] for s in every} == {"a@example.com", "b@example.com"}
    assert len(js(run("sessions", "list", "--limit", "2", "--json"))) == 2
    table = run("sessions", "list", "--email", "a@example.com")[1]
    assert "device 1 (" in table
    assert all(len(line) <= 100 for line in table.splitlines())

    assert js(run("sessions", "revoke", a_ids[0], "--json"))["status"] == "revoked"
    assert js(run("sessions", "revoke", a_ids[0], "--json"))["status"] == "already revoked"
    ended = js(run("sessions", "revoke", "--all", "--email", "a@example.com", "--json"))
    assert ended["revoked_sessions"] == 1
    assert len(js(run("sessions", "list", "--json"))) == 1


def test_rotating_a_client_secret_shows_a_new_one(run: Run) -> None:
    client = js(run("clients", "create", "--name", "reports", "--scopes", "profile", "--json"))
    rotated = js(run("clients", "rotate-secret", client["client_id"], "--json"))
    assert rotated["client_id"] == client["client_id"]
    assert rotated["client_secret"] != client["client_secret"]
    code, _, err = run("clients", "rotate-secret", "wwc_unknown")
    assert code == 1 and "No such client" in err


def test_tables_fit_100_columns_unless_wide(run: Run) -> None:
    create(run, "someone-with-a-rather-long-address@example.com", "--first-name", "x" * 80)
    narrow = run("audit", "tail")[1].splitlines()
    wide = run("audit", "tail", "--wide")[1].splitlines()
    assert all(len(line) <= 100 for line in narrow) and "…" in "".join(narrow)
    assert max(len(line) for line in wide) > 100
