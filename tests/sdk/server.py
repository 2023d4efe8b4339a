"""A real ``watchword serve`` process for the SDK's end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PASSWORD, TEST_SECRET_KEY

WATCHWORD = str(Path(sys.executable).with_name("watchword"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``watchword serve`` on a free loopback port in ``workdir``, with the CLI beside it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
        self.env.update(
            WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
            WATCHWORD_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/watchword.db",
            WATCHWORD_LOGIN_RATE_LIMIT_IP="100000/minute",
            WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT="100000/minute",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [WATCHWORD, *args],
            input=stdin.encode() if stdin is not None else None,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()

    def create_user(self, email: str, *roles: str) -> None:
        args = ["users", "create", "--email", email, "--password-stdin"]
        for role in roles:
            args += ["--role", role]
        self.cli(*args, stdin=PASSWORD + "\n")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                WATCHWORD,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(300):  # up to ~30 s for a cold start on a busy machine
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"watchword serve exited: {err[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("watchword serve did not become healthy")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
