"""`serve --workers N` on the embedded default: the workers share one bus through the
supervisor, so a revocation made by one worker reaches the others at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving
from watchword.bus.workers import WorkerBroker, WorkerBus
from watchword.domain.errors import StoreUnavailable


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_every_worker_gets_every_message_the_publisher_included(tmp_path: Path) -> None:
    broker = WorkerBroker(str(tmp_path / "bus.sock"))
    broker.start()
    one, two = WorkerBus(broker.path), WorkerBus(broker.path)
    seen: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}

    async def on_one(message: dict[str, Any]) -> None:
        seen["one"].append(message)

    async def on_two(message: dict[str, Any]) -> None:
        seen["two"].append(message)

    one.subscribe("control", on_one)
    two.subscribe("control", on_two)
    try:
        await one.start()
        await two.start()
        # Linked means greeted: the broker already counts both, so nothing published now is lost.
        assert one.healthy and two.healthy
        assert broker.peer_count == 2
        for n in range(3):
            await one.publish("control", {"n": n})
        await _until(lambda: len(seen["one"]) == 3 and len(seen["two"]) == 3)
        assert seen["one"] == seen["two"] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert os.stat(broker.path).st_mode & 0o077 == 0  # only this user may link
    finally:
        await one.close()
        await two.close()
        broker.stop()


async def test_a_lost_broker_fails_publishes_closed_and_reports_gaps(tmp_path: Path) -> None:
    path = str(tmp_path / "bus.sock")
    broker = WorkerBroker(path)
    broker.start()
    bus = WorkerBus(path, max_backoff=0.05)
    gaps: list[float] = []

    async def on_gap() -> None:
        gaps.append(time.monotonic())

    bus.on_gap(on_gap)
    try:
        await bus.start()
        broker.stop()
        # The broker ends the links it holds as it stops, not only its listener.
        await _until(lambda: not bus.healthy)
        with pytest.raises(StoreUnavailable):
            await bus.publish("control", {"n": 1})
        assert len(gaps) == 1  # the loss
        broker = WorkerBroker(path)
        broker.start()
        await _until(lambda: bus.healthy)
        await _until(lambda: len(gaps) == 2)  # and the relink: the control feed is re-read
    finally:
        await bus.close()
        broker.stop()


@pytest.mark.e2e
def test_a_logout_on_one_worker_reaches_the_other_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHWORD_", "API_"))}
    env.update(
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        WATCHWORD_SECRET_KEY_FILE=str(tmp_path / "watchword.secret"),
        WATCHWORD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/watchword.db",
        # The control feed would carry it in an hour: only the worker bus can carry it now.
        WATCHWORD_CONTROL_POLL_INTERVAL="3600",
        WATCHWORD_OPEN_REGISTRATION="true",
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [WATCHWORD, "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    clients: dict[str, httpx.Client] = {}
    try:
        wait_until_serving(process, url, output=lambda: (tmp_path / "serve.log").read_text())
        # One kept-alive connection per worker: a connection stays with the worker that took it.
        for _ in range(200):
            client = httpx.Client(base_url=url, timeout=10)
            node = client.get("/readyz", params={"verbose": 1}).json()["node"]["id"]
            if node in clients:
                client.close()
            else:
                clients[node] = client
            if len(clients) == 2:
                break
        assert len(clients) == 2, "the kernel never handed a connection to the second worker"
        first, second = clients.values()
        email = "workers@example.com"
        assert first.post("/v1/users", json={"email": email, "password": PASSWORD}).is_success
        login = first.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
        )
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert first.get("/v1/me", headers=bearer).status_code == 200
        assert second.get("/v1/me", headers=bearer).status_code == 200  # cached as valid there
        assert first.post("/v1/auth/logout", headers=bearer).status_code in (200, 204)
        deadline = time.monotonic() + 5  # a bound on the wait, not the figure (see bench/)
        while second.get("/v1/me", headers=bearer).status_code == 200:
            assert time.monotonic() < deadline, "the other worker still accepts the token"
            time.sleep(0.01)
        assert second.get("/v1/me", headers=bearer).status_code == 401
    finally:
        for client in clients.values():
            client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
