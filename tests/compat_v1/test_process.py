"""Real ``watchword serve`` processes: API_HOST/API_PORT, CLI users signing in on /api/v1,
``session_db_auth`` sessions surviving a kill and a restart, in-memory ones not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat_v1.conftest import SESSION_NAME
from tests.helpers import TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving

EMAIL = "cli-user@hbtn.io"
PASSWORD = "a CLI password"


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WATCHWORD_", "API_"))
        and k not in ("AUTH_TYPE", "SESSION_NAME", "SESSION_DURATION")
    }
    env.update(
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        WATCHWORD_SECRET_KEY_FILE=str(workdir / "watchword.secret"),
        WATCHWORD_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/watchword.db",
        SESSION_NAME=SESSION_NAME,
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], workdir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [WATCHWORD, *args],
        input=stdin.encode() if stdin is not None else None,
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


class Server:
    """``watchword serve`` with no --host/--port: API_HOST and API_PORT choose them."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.env = {**env, "API_HOST": "127.0.0.1", "API_PORT": str(self.port)}
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, **env: str) -> None:
        self.env.update(env)
        with (self.workdir / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [WATCHWORD, "serve", "--log-level", "warning"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_serving(
            self.process, self.url, within=60, output=(self.workdir / "serve.log").read_text
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    made = Server(base_env(workdir), workdir)
    yield made
    made.stop()


def create_user(server: Server) -> None:
    """``watchword users create`` against the running server's database."""
    cli(
        server.env,
        server.workdir,
        "users",
        "create",
        "--email",
        EMAIL,
        "--password-stdin",
        stdin=PASSWORD,
    )


def login(url: str) -> str:
    response = httpx.post(
        f"{url}/api/v1/auth_session/login", data={"email": EMAIL, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    name, _, rest = response.headers["set-cookie"].partition("=")
    assert name == SESSION_NAME and rest.endswith("; Path=/")
    return rest.removesuffix("; Path=/")


def me(url: str, session_id: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/users/me", headers={"Cookie": f"{SESSION_NAME}={session_id}"})


def live_kinds(server: Server) -> list[str]:
    listed = json.loads(
        cli(server.env, server.workdir, "sessions", "list", "--email", EMAIL, "--json")
    )
    return sorted(s["kind"] for s in listed)


def test_session_db_auth_sessions_survive_a_real_restart(server: Server) -> None:
    server.start(AUTH_TYPE="session_db_auth", SESSION_DURATION="3600")
    create_user(server)
    session_id = login(server.url)
    first = me(server.url, session_id)
    assert first.status_code == 200 and first.json()["email"] == EMAIL
    server.kill()  # no graceful shutdown: what a 200 acknowledged is on disk
    server.start()
    again = me(server.url, session_id)
    assert again.status_code == 200 and again.json() == first.json()
    logout = httpx.delete(
        f"{server.url}/api/v1/auth_session/logout",
        headers={"Cookie": f"{SESSION_NAME}={session_id}"},
    )
    assert logout.status_code == 200 and logout.json() == {}
    assert me(server.url, session_id).status_code == 403


def test_session_auth_sessions_end_with_the_process(server: Server) -> None:
    server.start(AUTH_TYPE="session_auth")
    create_user(server)
    session_id = login(server.url)
    assert me(server.url, session_id).status_code == 200
    assert live_kinds(server) == ["compat-memory"]
    server.stop()
    server.start()
    response = me(server.url, session_id)
    assert response.status_code == 403 and response.json() == {"error": "Forbidden"}
    assert live_kinds(server) == []
