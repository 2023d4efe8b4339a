"""The peers' environment and servers, for ``bench.suite_http``'s peers table.

The peers get their own virtualenv, bench/peers/.venv, installed with uv from
bench/peers/requirements.lock (hashes required) and reused while its stamp is newer than the
lock: fastapi-users' SQLAlchemy adapter needs SQLAlchemy < 2.1, so the peers cannot share
Watchword's lock. Each peer app runs as its own process group on 127.0.0.1 in a temporary
directory, stopped (and its directory removed) on every way out of its ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from bench.common import BENCH_SECRET_KEY, PASSWORD, free_port, tree_cpu_seconds

PEERS_DIR = Path(__file__).resolve().parent
LOCK = PEERS_DIR / "requirements.lock"
VENV = PEERS_DIR / ".venv"
STAMP = VENV / ".installed"
UV = str(Path(sys.executable).with_name("uv"))
EMAIL = "bench@example.com"
# Sent by the sign-in and by wrk alike: Flask-Login's session protection hashes the client's
# address and User-Agent, and a mismatch would mark every request's session as changed.
USER_AGENT = "watchword-bench"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class PeersUnavailable(RuntimeError):
    """The peers' environment could not be made (no network, say): the reason is the text."""


def ensure_environment() -> Path:
    """The peers' bin directory, installing the environment first when it is missing or
    older than the lock."""
    if STAMP.exists() and STAMP.stat().st_mtime > LOCK.stat().st_mtime:
        return VENV / "bin"
    steps = [
        [UV, "venv", "--clear", "--quiet", "--python", "python3", str(VENV)],
        [
            UV,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(VENV / "bin" / "python"),
            "--require-hashes",
            "-r",
            str(LOCK),
        ],
    ]
    for command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeersUnavailable(f"{' '.join(command[:3])}: {exc}") from exc
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip()[-1000:]
            raise PeersUnavailable(f"{' '.join(command[:3])} failed: {reason}")
    STAMP.touch()
    return VENV / "bin"


class PeerServer:
    """A peer app served from the peers' environment, optionally pinned (taskset)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        port: int,
        env: dict[str, str] | None = None,
        workdir: str,
        cpus: str | None = None,
        health_path: str = "/healthz",
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.cpus = cpus
        self.health_path = health_path
        base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        self.env = {**base, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(workdir, "server.log")
        self.on_stop = on_stop

    def start(self) -> PeerServer:
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*pin, *self.command],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,  # as shipped, default logging included; a file never fills up
                start_new_session=True,  # its own process group: a forked worker stops too
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not up in {START_TIMEOUT:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.log_path).read_text(errors="replace")[-2000:]
        return "(no log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Anything of the group that outlived its leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.on_stop is not None:
            self.on_stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return tree_cpu_seconds(self.process.pid)

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _peer_env(workdir: str) -> dict[str, str]:
    return {
        "PEERS_SECRET_KEY": BENCH_SECRET_KEY,
        "PEERS_DATABASE": os.path.join(workdir, "users.db"),
    }


def _remove_redis_keys(redis_url: str, prefix: str) -> None:
    """The run's sessions, by their key prefix (Redis may be gone by then: nothing to do)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


def flask_login(bin_dir: Path, redis_url: str, cpus: str | None) -> PeerServer:
    """Flask + Flask-Login + Flask-Session under gunicorn: one gthread worker, 4 threads (one
    process for the one core it is pinned to)."""
    workdir = tempfile.mkdtemp(prefix="watchword-bench-flask-")
    port = free_port()
    prefix = f"watchword-bench-flask-{uuid.uuid4().hex[:12]}:"
    return PeerServer(
        "Flask-Login",
        [
            str(bin_dir / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--graceful-timeout",
            "5",
            # Its own control socket (the default is one path in $HOME for every gunicorn).
            "--control-socket",
            os.path.join(workdir, "gunicorn.ctl"),
            "--chdir",
            str(PEERS_DIR),
            "flask_login_app:app",
        ],
        port=port,
        env={**_peer_env(workdir), "PEERS_REDIS_URL": redis_url, "PEERS_SESSION_PREFIX": prefix},
        workdir=workdir,
        cpus=cpus,
        on_stop=lambda: _remove_redis_keys(redis_url, prefix),
    )


def fastapi_users(bin_dir: Path, cpus: str | None) -> PeerServer:
    """fastapi-users under uvicorn as shipped: one process, default logging."""
    workdir = tempfile.mkdtemp(prefix="watchword-bench-fastapi-users-")
    port = free_port()
    return PeerServer(
        "fastapi-users",
        [
            str(bin_dir / "uvicorn"),
            "fastapi_users_app:app",
            "--app-dir",
            str(PEERS_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "5",
        ],
        port=port,
        env=_peer_env(workdir),
        workdir=workdir,
        cpus=cpus,
    )


def _first_cookie(response: httpx.Response) -> str:
    """``name=value`` of the response's Set-Cookie (the cookie transport marks it Secure,
    which a client's cookie jar would keep off plain HTTP)."""
    return response.headers["set-cookie"].split(";", 1)[0]


def _checked(response: httpx.Response) -> httpx.Response:
    response.raise_for_status()
    return response


# Each returns (path, headers) for wrk, after creating the user and signing in.


def flask_login_cookie(server: PeerServer) -> tuple[str, dict[str, str]]:
    credentials = {"email": EMAIL, "password": PASSWORD}
    headers = {"User-Agent": USER_AGENT}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        _checked(client.post("/register", json=credentials))
        cookie = _first_cookie(_checked(client.post("/login", json=credentials)))
        _checked(client.get("/me", headers={"Cookie": cookie}))
    return "/me", {**headers, "Cookie": cookie}


def _fastapi_users_signed_up(client: httpx.Client) -> None:
    response = client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
    if response.status_code == 400 and "ALREADY_EXISTS" in response.text:
        return  # by the other scenario
    _checked(response)


def fastapi_users_jwt(server: PeerServer) -> tuple[str, dict[str, str]]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _fastapi_users_signed_up(client)
        form = {"username": EMAIL, "password": PASSWORD}
        token = _checked(client.post("/auth/jwt/login", data=form)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        _checked(client.get("/users/me", headers=headers))
    return "/users/me", headers


def fastapi_users_cookie(server: PeerServer) -> tuple[str, dict[str, str]]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _fastapi_users_signed_up(client)
        form = {"username": EMAIL, "password": PASSWORD}
        cookie = _first_cookie(_checked(client.post("/auth/cookie/login", data=form)))
        headers = {"Cookie": cookie}
        _checked(client.get("/users/me", headers=headers))
    return "/users/me", headers


def bare(server: PeerServer) -> tuple[str, dict[str, str]]:
    return "/healthz", {}
