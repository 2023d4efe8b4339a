"""What the event loop must never wait for: a log write, a worker thread per request, a
database connection opened and closed again, a parser built on first use."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Client
from tests.foundation.procs import Server, cli_env
from tests.foundation.test_cli import wait_ready
from tests.helpers import PASSWORD
from watchword.stores.sql.engine import make_engine
from watchword.web import logs


class ThreadNotingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writers: set[int] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.get_ident())
        return super().write(text)


@pytest.fixture
def configure_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ThreadNotingStream]]:
    """``logs.configure`` as ``watchword serve`` calls it, writing to a stream the test reads;
    the root logger is given back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configure(**options: Any) -> ThreadNotingStream:
        # Set during the test itself: pytest swaps sys.stderr between setup and the call.
        stream = ThreadNotingStream()
        monkeypatch.setattr("sys.stderr", stream)  # where logging.StreamHandler() writes
        logs.configure(level="info", **options)
        return stream

    try:
        yield configure
    finally:
        logs._stop_writer()
        root.handlers = handlers
        root.setLevel(level)


def test_log_lines_are_written_by_a_thread_of_their_own_and_still_redacted(
    configure_logs: Callable[..., ThreadNotingStream],
) -> None:
    stream = configure_logs()
    logs.log_access("GET", "/v1/realtime", "ticket=wwt_secret&x=1", 101, 0.0, "user")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("watchword.test").exception("failed")
    # A line that is not an access line is written before the call returns, after
    # whatever was queued before it.
    text = stream.getvalue()
    assert "GET /v1/realtime?ticket=[redacted]&x=1 101" in text
    assert "wwt_secret" not in text
    assert text.index("GET /v1/realtime") < text.index("failed")
    assert "ValueError: boom" in text  # the traceback crossed the queue as text
    assert stream.writers
    assert threading.get_ident() not in stream.writers


def test_json_lines_keep_the_traceback_in_its_own_field(
    configure_logs: Callable[..., ThreadNotingStream],
) -> None:
    stream = configure_logs(json_format=True)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("watchword.test").exception("failed")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["message"] == "failed"
    assert "ValueError: boom" in entry["exception"]


class HeldStream(ThreadNotingStream):
    """Counts its writes; the first one waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.held = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.calls += 1
        if self.calls == 1:
            self.held.set()
            self.release.wait(10)
        return super().write(text)


def held_logs(configure_logs: Callable[..., ThreadNotingStream]) -> HeldStream:
    """Logs configured to a ``HeldStream``, its writer thread held in its first write."""
    configure_logs()
    stream = HeldStream()
    (handler,) = logs._writer.handlers  # type: ignore[union-attr]
    handler.setStream(stream)  # type: ignore[attr-defined]
    logs.log_access("GET", "/first", "", 200, 0.0, "anonymous")
    assert stream.held.wait(10)
    return stream


def test_lines_queued_behind_a_write_go_out_together_in_order(
    configure_logs: Callable[..., ThreadNotingStream],
) -> None:
    stream = held_logs(configure_logs)
    for n in range(100):
        logs.log_access("GET", f"/line/{n}", "", 200, 0.0, "anonymous")
    stream.release.set()
    logging.getLogger("watchword.test").warning("after")  # returns once written
    lines = stream.getvalue().splitlines()
    assert [line.split()[4] for line in lines[:101]] == ["/first"] + [
        f"/line/{n}" for n in range(100)
    ]
    assert "after" in lines[101]
    assert stream.calls <= 3  # the held line, the hundred queued behind it, the warning


def test_a_filter_on_the_writers_own_handler_still_applies_to_joined_lines(
    configure_logs: Callable[..., ThreadNotingStream],
) -> None:
    stream = held_logs(configure_logs)
    (handler,) = logs._writer.handlers  # type: ignore[union-attr]
    handler.addFilter(lambda record: "/hidden" not in record.getMessage())
    for path in ("/shown", "/hidden", "/also-shown"):
        logs.log_access("GET", path, "", 200, 0.0, "anonymous")
    stream.release.set()
    logging.getLogger("watchword.test").warning("after")  # returns once written
    text = stream.getvalue()
    assert "/shown" in text and "/also-shown" in text
    assert "/hidden" not in text


def test_lines_the_writer_holds_when_it_stops_are_written(
    configure_logs: Callable[..., ThreadNotingStream],
) -> None:
    stream = held_logs(configure_logs)
    logs.log_access("GET", "/second", "", 200, 0.0, "anonymous")
    logs.log_access("GET", "/third", "", 200, 0.0, "anonymous")
    stopping = threading.Thread(target=logs._stop_writer)
    stopping.start()  # the stop reaches the queue behind both lines
    stream.release.set()
    stopping.join(10)
    text = stream.getvalue()
    assert "/first" in text and "/second" in text and "/third" in text


async def test_a_server_stopped_by_sigterm_still_writes_its_last_lines(tmp_path: Path) -> None:
    # uvicorn ends the process by raising the signal again after shutdown: no exit handler
    # runs, so a line still queued then would be lost.
    server = Server(cli_env(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"), tmp_path, log_level="info")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            await wait_ready(http)
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()
    text = "".join(server.output)
    assert "GET /healthz 200" in text
    assert "Finished server process" in text


async def test_routes_that_note_the_request_context_run_no_worker_thread(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI runs a plain-function dependency in a worker thread; the request context (31
    # routes, sign-in among them) is a coroutine, so it does not.
    import fastapi.dependencies.utils as resolver

    hops: list[Any] = []
    real = resolver.run_in_threadpool

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(resolver, "run_in_threadpool", counting)
    created = await client.post(
        "/v1/users", json={"email": "ctx@example.com", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    login = await client.post(
        "/v1/auth/login", json={"email": "ctx@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    assert hops == []


async def test_a_sqlite_file_keeps_its_connections_between_bursts(tmp_path: Path) -> None:
    # The driver's default pool kept 5 and opened and closed the rest of every burst: each
    # an aiosqlite thread started while the event loop waited.
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_size=10)
    release = asyncio.Event()

    async def hold() -> None:
        async with engine.connect():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(8)]
    while engine.sync_engine.pool.checkedout() < 8:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*holders)
    try:
        assert engine.sync_engine.pool.checkedin() == 8  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


def test_the_user_agent_parser_is_built_before_the_first_request(tmp_path: Path) -> None:
    # Built by the first parse, it held the event loop for a tenth of a second or more.
    probe = (
        "import sys; from watchword.web.app import app_from_env; app_from_env(); "
        "print('ua_parser_builtins.matchers' in sys.modules)"
    )
    env = cli_env(f"sqlite+aiosqlite:///{tmp_path / 'ua.db'}")
    ran = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip().splitlines()[-1] == "True"
