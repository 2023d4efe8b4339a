"""Shared benchmark plumbing: a real `watchword serve` process, wrk on loopback, tables.

Everything here talks to 127.0.0.1 only, and every load run is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH_SECRET_KEY = "benchmark-master-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"
WATCHWORD = str(Path(sys.executable).with_name("watchword"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and every process below it: gunicorn
    serves from a worker that its master forked."""
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks, stack = 0, [pid]
    while stack:
        current = stack.pop()
        if current in stats:
            ticks += int(stats[current][11]) + int(stats[current][12])
        stack += children.get(current, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU time all cores have spent so far, busy and idle (/proc/stat's ``cpu`` line):
    beside a server's own CPU time, what the rest of the machine (the load generator, the
    kernel's network work) took, and whether any core was left idle."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]  # steal: not this machine's
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, (idle + iowait) / tick


class Server:
    """`watchword serve` in a temporary directory, stopped on exit."""

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        workdir: str | None = None,
        port: int | None = None,
        cpus: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="watchword-bench-")
        self.env = {
            **os.environ,
            "WATCHWORD_SECRET_KEY": BENCH_SECRET_KEY,
            "WATCHWORD_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir}/watchword.db",
            # Benchmarks sign in more often than a person would.
            "WATCHWORD_LOGIN_RATE_LIMIT_IP": "100000/minute",
            "WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
            **(env or {}),
        }
        self.workers = workers
        # e.g. "0": the server pinned to one core (taskset), the load generator on another.
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None
        # Seconds start() waits for /healthz (a server under valgrind starts ~10x slower).
        self.ready_within = 60.0
        # A program the server runs under (a profiler), its pid the server's.
        self.wrapper: list[str] = []

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
        if result.returncode != 0:
            raise RuntimeError(f"watchword {' '.join(args)}: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def start(self) -> Server:
        if not self.env["WATCHWORD_DATABASE_URL"].startswith("sqlite"):
            self.cli("db", "upgrade")
        prefix = ["taskset", "-c", self.cpus] if self.cpus else []
        prefix += self.wrapper
        self.log_path = os.path.join(self.workdir, "server.log")
        self.process = subprocess.Popen(
            [
                *prefix,
                WATCHWORD,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            cwd=self.workdir,
            env=self.env,
            # As shipped, default logging included; to a file, so a full pipe never blocks it.
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"),
        )
        deadline = time.monotonic() + self.ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = Path(self.log_path).read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"server exited: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        err = Path(self.log_path).read_text(errors="replace")
        self.stop()  # a server that never became healthy must not outlive the run
        raise RuntimeError(
            f"server did not become healthy in {self.ready_within:.0f} s: {err[-2000:]}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far: with the server on
        one process, CPU per request is what a request costs, whatever else the machine runs."""
        assert self.process is not None and self.workers == 1
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def waiting_seconds(self) -> float:
        """How long the server's main thread (its event loop) has been ready to run while
        something else held its core, so far (the kernel's run-queue wait, schedstat)."""
        assert self.process is not None
        return int(Path(f"/proc/{self.process.pid}/schedstat").read_text().split()[1]) / 1e9

    def stolen_seconds(self) -> float:
        """Steal time of the core the server is pinned to, so far: time the hypervisor gave
        that virtual core to another machine (/proc/stat)."""
        assert self.cpus is not None and self.cpus.isdigit(), "pinned to one core"
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields[0] == f"cpu{self.cpus}":
                return int(fields[8]) / os.sysconf("SC_CLK_TCK")
        raise RuntimeError(f"no cpu{self.cpus} in /proc/stat")

    def close(self) -> None:  # for contextlib.closing
        self.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_user(self, email: str, *, roles: Sequence[str] = ()) -> None:
        args = ["users", "create", "--email", email, "--password-stdin"]
        for role in roles:
            args += ["--role", role]
        self.cli(*args, stdin=PASSWORD + "\n")

    def login(self, email: str, **extra: Any) -> httpx.Response:
        response = httpx.post(
            self.url + "/v1/auth/login",
            json={"email": email, "password": PASSWORD, **extra},
            timeout=30,
        )
        response.raise_for_status()
        return response


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    duration: float = 5.0,
    connections: int = 32,
    threads: int = 1,
    cpus: str | None = None,
    timeout: float = 2.0,
) -> LoadResult:
    """One bounded wrk run on loopback; latency percentiles from wrk's --latency table.
    ``timeout``: seconds before wrk counts a request as an error (a slowed server's)."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError("benchmarks only target loopback")
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        f"--timeout={timeout:g}s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult(rps=rps, p50_ms=p50, p99_ms=p99, requests=total, errors=errors)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [
        max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    print(f"\n{title}")
    print("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(columns)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(row[i].ljust(widths[i]) for i in range(len(columns))) + " |")
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database for one benchmark run, or None when unreachable."""
    import asyncio

    import asyncpg

    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"watchword_bench_{uuid.uuid4().hex[:8]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"(PostgreSQL unreachable at {dsn}: {exc}; skipping its rows)")
        yield None
        return
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


POSTGRES_URL = os.environ.get(
    "WATCHWORD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
