"""A real ``watchword serve`` process for the SDK's end-to-end tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import (
    PASSWORD,
    TEST_SECRET_KEY,
    WATCHWORD,
    free_port,
    wait_until_serving,
)


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
        process = self.process
        wait_until_serving(
            process,
            self.url,
            output=lambda: process.stderr.read().decode() if process.stderr else "",
        )

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
