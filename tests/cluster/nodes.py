"""Real `watchword serve` processes sharing one PostgreSQL database and one Redis."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PASSWORD, TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving


def cluster_env(
    workdir: Path, database_url: str, redis_url: str, prefix: str, **settings: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHWORD_", "API_"))}
    env.update(
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        WATCHWORD_SECRET_KEY_FILE=str(workdir / "watchword.secret"),
        WATCHWORD_DATABASE_URL=database_url,
        WATCHWORD_REDIS_URL=redis_url,
        WATCHWORD_REDIS_PREFIX=prefix,
        WATCHWORD_LOGIN_RATE_LIMIT_IP="100000/minute",
        WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT="100000/minute",
        WATCHWORD_REDIS_SOCKET_TIMEOUT="0.5",
        WATCHWORD_REDIS_CONNECT_TIMEOUT="0.5",
        WATCHWORD_BUS_RECONNECT_MAX_DELAY="0.2",
        # One issuer for the cluster (the load balancer's URL), as docs/operations.md says.
        WATCHWORD_PUBLIC_URL="http://127.0.0.1:8080",
    )
    env.update({f"WATCHWORD_{k.upper()}": v for k, v in settings.items()})
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
    if result.returncode != 0:
        raise AssertionError(f"watchword {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode()


class Node:
    """One `watchword serve` process on its own port."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [WATCHWORD, "serve", "--port", str(self.port), "--log-level", "warning"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, within: float = 90.0) -> None:
        assert self.process is not None
        wait_until_serving(
            self.process, self.url, path="/readyz", within=within, output=self.log.read_text
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Browser:
    """One user agent: a cookie and a CSRF token, usable against any node.

    Browsers share one httpx client, so its cookie jar is emptied after every call: each
    browser sends only its own cookie, as separate devices do (a jar shared by two devices
    would make the second sign-in end the first device's session: rotation at sign-in).
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.session_id: str | None = None

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.cookie is not None:
            headers["Cookie"] = f"watchword_session={self.cookie}"
        if self.csrf is not None:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    async def login(self, node: Node, email: str, password: str = PASSWORD) -> httpx.Response:
        response = await self.http.post(
            node.url + "/v1/auth/login",
            json={"email": email, "password": password},
            headers=self.headers(),
        )
        self.http.cookies.clear()
        if response.status_code == 200:
            self.cookie = response.cookies["watchword_session"]
            self.csrf = response.json()["csrf_token"]
            self.session_id = response.json()["session"]["id"]
        return response

    async def request(self, method: str, node: Node, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(
            method, node.url + path, headers=self.headers(), **kwargs
        )
        self.http.cookies.clear()
        return response
