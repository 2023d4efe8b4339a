"""A real ``watchword serve`` process for the gateway's end-to-end tests.

Each server runs in its own temporary directory on a free loopback port, with users made by
``watchword users create --password-stdin``. Its log is kept so tests can check that no
ticket or token was ever written to it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PASSWORD, TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving


@dataclass
class Server:
    port: int
    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WATCHWORD, *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env,
            timeout=60,
            check=False,
        )

    def create_user(self, email: str, *roles: str) -> dict[str, Any]:
        args = ["users", "create", "--email", email, "--password-stdin", "--json"]
        for role in roles:
            args += ["--role", role]
        result = self.cli(*args, stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        user: dict[str, Any] = json.loads(result.stdout)
        self.users[email] = user
        return user

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [WATCHWORD, "serve", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_serving(self.process, self.http, output=self.log)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_server(tmp: Path, **settings: Any) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update(
        {
            "WATCHWORD_SECRET_KEY": TEST_SECRET_KEY,
            "WATCHWORD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/watchword.db",
            "WATCHWORD_LOGIN_RATE_LIMIT_IP": "100000/minute",
            "WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
            "WATCHWORD_CONTROL_POLL_INTERVAL": "0.2",
        }
    )
    for key, value in settings.items():
        env["WATCHWORD_" + key.upper()] = value if isinstance(value, str) else json.dumps(value)
    return Server(port=port, workdir=tmp, env=env)


USER_SCOPES = ["profile", "sessions", "api-keys", "signing-keys", "realtime", "channel:news"]
ROLE_SCOPES = {
    "user": USER_SCOPES,
    "admin": ["admin", "realtime:publish", "realtime:presence"],
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The everyday server: small limits so the tests can reach them."""
    srv = make_server(
        tmp_path_factory.mktemp("realtime"),
        role_scopes=ROLE_SCOPES,
        realtime_max_connections_per_user=3,
        realtime_max_message_bytes=4096,
        realtime_max_event_bytes=900_000,
        realtime_rate_limit=20,
        realtime_rate_burst=30,
        realtime_send_queue=16,
        realtime_close_timeout=60,
    )
    srv.start()  # migrates the database; the CLI then acts on the running server's store
    srv.create_user("admin@example.com", "admin")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Short timers: tickets and credentials that live seconds, fast pings."""
    srv = make_server(
        tmp_path_factory.mktemp("realtime-short"),
        realtime_ticket_ttl=2,
        realtime_credential_max_age=3,
        realtime_refresh_window=2,
        realtime_sweep_interval=0.05,
        realtime_ping_interval=1.0,
        realtime_pong_timeout=1.0,
        realtime_auth_timeout=0.5,
    )
    srv.start()
    srv.create_user("admin@example.com", "admin")
    yield srv
    srv.stop()
