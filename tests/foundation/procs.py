"""Running the ``watchword`` command as a real process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import TEST_SECRET_KEY

WATCHWORD = str(Path(sys.executable).with_name("watchword"))
LISTENING = re.compile(r"Watchword listening on http://([^\s:]+):(\d+)")


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update(
        WATCHWORD_DATABASE_URL=database_url,
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        # The default argon2 cost is kept: the CLI cannot go below OWASP's minimum.
        WATCHWORD_CONTROL_POLL_INTERVAL="0.2",
    )
    env.update(extra)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path, stdin: str | None = None
) -> Result:
    process = await asyncio.create_subprocess_exec(
        WATCHWORD,
        *args,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else b""), timeout=120
    )
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


class Server:
    """``watchword serve --port N`` in a child process; ``base_url`` once it listens."""

    def __init__(
        self, env: Mapping[str, str], cwd: Path, port: int = 0, log_level: str = "warning"
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.port = port
        self.log_level = log_level
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            WATCHWORD,
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), timeout=60)).decode()
            self.output.append(line)
            if not line:
                raise AssertionError("serve exited: " + "".join(self.output))
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                break
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode())

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._drain
        assert self.process.returncode is not None
        return self.process.returncode
