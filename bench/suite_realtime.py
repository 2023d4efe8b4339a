"""The realtime gateway under load: idle connections, fan-out, revocation; socket.io baseline.

(a) hold N authenticated idle WebSockets on one `watchword serve` process (bearer token in
    the subprotocol, like a mobile app) and report the server's RSS per connection;
(b) fan-out: publish one event (HTTP) to 1,000 and to N subscribers, and time from the publish
    request to the moment the last client saw it, over several rounds (p50 and p99);
(c) revocation: sign 200+ sessions out one at a time and time from the logout response to the
    socket's close;
and, in the same run, a python-socketio ASGI server on the same uvicorn stack doing the same
fan-out to the same connections as the baseline (it authenticates nobody).

Clients run in separate processes (websockets' asyncio client); times are CLOCK_MONOTONIC,
which is shared by every process on the machine. Loopback only; every loop is bounded in count
and time.

    python -m bench.suite_realtime [--connections 10000] [--rounds 10] [--revocations 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from multiprocessing.connection import Connection as Pipe
from typing import Any

import httpx
import websockets

from bench.common import PASSWORD, Server, free_port, print_table

OPEN_CONCURRENCY = 100
OPEN_DEADLINE = 400.0  # seconds for all connections to open
ROUND_DEADLINE = 60.0
CLOSE_DEADLINE = 10.0
SMALL_FANOUT = 1000


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- client worker process ------------------------------------------------------------------


class Worker:
    """Holds connections in its own process; reports when a marked event reached them all."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.marker = ""
        self.expected = 0
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()

    async def reader(self, ws: Any, kind: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                if self.marker and self.marker in raw:
                    self.count += 1
                    self.last = time.monotonic()
                    if self.count >= self.expected:
                        self.done.set()
                elif kind == "watchword" and raw == '{"type":"ping"}':
                    await ws.send('{"type":"pong"}')
                elif kind == "socketio" and raw == "2":
                    await ws.send("3")

    async def open_one(self, kind: str, url: str, token: str, channels: list[str]) -> None:
        if kind == "watchword":
            ws = await websockets.connect(
                url,
                subprotocols=["watchword.v1", f"bearer.{token}"],  # type: ignore[list-item]
                open_timeout=30,
                ping_interval=None,
                max_queue=4,
            )
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"refused: {ws.close_code} {ws.close_reason}")
            for channel in channels:
                await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if answer.get("type") != "subscribed":
                    raise RuntimeError(f"subscribe refused: {answer}")
        else:
            room = ",".join(channels)
            ws = await websockets.connect(
                f"{url}/socket.io/?EIO=4&transport=websocket&rooms={room}",
                open_timeout=30,
                ping_interval=None,
                max_queue=4,
            )
            opened = await asyncio.wait_for(ws.recv(), 30)  # engine.io "0{...}"
            if not str(opened).startswith("0"):
                raise RuntimeError(f"engine.io open expected, got {opened!r}")
            await ws.send("40")
            connected = await asyncio.wait_for(ws.recv(), 30)  # "40{sid}"
            if not str(connected).startswith("40"):
                raise RuntimeError(f"socket.io connect expected, got {connected!r}")
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self.reader(ws, kind)))

    async def open_many(self, spec: dict[str, Any]) -> tuple[int, int]:
        semaphore = asyncio.Semaphore(OPEN_CONCURRENCY)
        failures = 0

        async def one(index: int) -> None:
            nonlocal failures
            channels = [c for c, upto in spec["channels"] if index < upto]
            async with semaphore:
                try:
                    await self.open_one(spec["kind"], spec["url"], spec["token"], channels)
                except Exception:
                    failures += 1

        first = spec["first_index"]
        indexes = range(first, first + spec["count"])
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in indexes)), timeout=OPEN_DEADLINE)
        return len(self.sockets), failures

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, self.pipe.recv)
            if command == "open":
                self.pipe.send(await self.open_many(arg))
            elif command == "expect":
                self.marker, self.expected = arg
                self.count, self.last = 0, 0.0
                self.done = asyncio.Event()
                if self.expected == 0:
                    self.done.set()
                self.pipe.send("ready")
            elif command == "collect":
                try:
                    await asyncio.wait_for(self.done.wait(), ROUND_DEADLINE)
                except TimeoutError:
                    pass
                self.pipe.send((self.count, self.last))
            elif command == "close":
                for ws in self.sockets:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 1)
                for task in self.readers:
                    task.cancel()
                self.pipe.send("closed")
                return


def worker_main(pipe: Pipe) -> None:
    raise_fd_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(Worker(pipe).run())


class Clients:
    """Several worker processes, each holding a share of the connections."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs = []
        for _ in range(processes):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(theirs,), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)
        self.shares: list[range] = []

    def open(
        self, kind: str, url: str, token: str, total: int, channels: list[tuple[str, int]]
    ) -> int:
        per = -(-total // len(self.pipes))
        self.shares = []
        for n, pipe in enumerate(self.pipes):
            first = n * per
            count = max(0, min(per, total - first))
            self.shares.append(range(first, first + count))
            pipe.send(
                (
                    "open",
                    {
                        "kind": kind,
                        "url": url,
                        "token": token,
                        "count": count,
                        "first_index": first,
                        "channels": channels,
                    },
                )
            )
        opened = failed = 0
        for pipe in self.pipes:
            ok, bad = pipe.recv()
            opened, failed = opened + ok, failed + bad
        if failed:
            print(f"  ({failed} connections failed to open)", flush=True)
        return opened

    def round(self, upto: int, publish: Any) -> float:
        """Publish once (``publish()`` returns its start time); seconds until the last of
        the first ``upto`` connections had it."""
        marker = "m" + uuid.uuid4().hex[:12]
        for pipe, share in zip(self.pipes, self.shares, strict=True):
            pipe.send(("expect", (marker, len(range(share.start, min(share.stop, upto))))))
        for pipe in self.pipes:
            pipe.recv()
        started = publish(marker)
        for pipe in self.pipes:
            pipe.send(("collect", None))
        results = [pipe.recv() for pipe in self.pipes]
        got = sum(count for count, _ in results)
        if got < upto:
            raise RuntimeError(f"only {got} of {upto} connections got the event")
        return max(last for _, last in results) - started

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("close", None))
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                if pipe.poll(CLOSE_DEADLINE):
                    pipe.recv()
        for proc in self.procs:
            proc.join(CLOSE_DEADLINE)
            if proc.is_alive():
                proc.kill()


# -- the socket.io baseline server ----------------------------------------------------------


def socketio_server(port: int) -> None:
    """python-socketio on uvicorn (uvloop, httptools, wsproto, as `watchword serve` runs)."""
    import socketio
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"], logger=False)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        query = environ.get("QUERY_STRING", "")
        for part in query.split("&"):
            if part.startswith("rooms="):
                for room in filter(None, part[6:].split(",")):
                    await sio.enter_room(sid, room)

    async def publish(request: Request) -> JSONResponse:
        body = await request.json()
        await sio.emit("bench", body["data"], room=body["channel"])
        return JSONResponse({"status": "published"}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    web = Starlette(
        routes=[Route("/publish", publish, methods=["POST"]), Route("/healthz", healthz)]
    )
    app = socketio.ASGIApp(sio, other_asgi_app=web)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="wsproto",
        ws_per_message_deflate=False,  # as `watchword serve` runs
        log_level="warning",
        access_log=False,
    )


class SocketIOServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SocketIOServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.suite_realtime", "--socketio-server", str(self.port)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("socket.io server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


# -- the measurements -----------------------------------------------------------------------


def fanout_rounds(
    clients: Clients, sizes: list[int], rounds: int, publish: Any
) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {}
    for size in sizes:
        clients.round(size, publish(size))  # warm-up, not counted
        times[size] = [clients.round(size, publish(size)) for _ in range(rounds)]
    return times


def channel_for(size: int, total: int) -> str:
    return "fanall" if size >= total else f"fan{size}"


async def revocations(server: Server, count: int) -> list[tuple[float, float]]:
    """(from the logout request, from its response) to the close, per session, in seconds."""
    email = f"revoke-{uuid.uuid4().hex[:8]}@example.com"
    results: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post("/v1/users", json={"email": email, "password": PASSWORD})
        response.raise_for_status()
        for _ in range(count):
            response = await http.post(
                "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
            )
            response.raise_for_status()
            token = response.json()["access_token"]
            ws = await websockets.connect(
                server.url.replace("http", "ws") + "/v1/realtime",
                subprotocols=["watchword.v1", f"bearer.{token}"],  # type: ignore[list-item]
                ping_interval=None,
            )
            await asyncio.wait_for(ws.recv(), 30)  # welcome
            closed_at: list[float] = []

            async def watch(ws: Any = ws, closed_at: list[float] = closed_at) -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for _ in ws:
                        pass
                closed_at.append(time.monotonic())

            watcher = asyncio.create_task(watch())
            sent = time.monotonic()
            response = await http.post(
                "/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
            )
            answered = time.monotonic()
            response.raise_for_status()
            await asyncio.wait_for(watcher, CLOSE_DEADLINE)
            if ws.close_code != 4003:
                raise RuntimeError(f"expected 4003, got {ws.close_code}")
            results.append((closed_at[0] - sent, closed_at[0] - answered))
    return results


def ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1000:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_realtime")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--socketio-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.socketio_server:
        socketio_server(args.socketio_server)
        return
    limit = raise_fd_limit()
    total = min(
        args.connections, max(100, (limit - 500) // max(1, args.processes) * args.processes)
    )
    total = min(total, max(100, limit - 500))
    if total < args.connections:
        print(f"open-file limit {limit}: holding {total} connections", flush=True)
    sizes = sorted({min(SMALL_FANOUT, total), total})
    channels = [(channel_for(s, total), s) for s in sizes]
    env = {
        "WATCHWORD_REALTIME_MAX_CONNECTIONS_PER_USER": str(total + 1000),
        "WATCHWORD_ACCESS_TOKEN_TTL": "3600",
        "WATCHWORD_ROLE_SCOPES": json.dumps(
            {
                "user": ["profile", "sessions", "realtime", "channel:*"],
                "admin": ["admin", "realtime:publish", "realtime:presence"],
            }
        ),
    }
    rows: list[list[Any]] = []
    with Server(env=env) as server:
        assert server.process is not None
        server.create_user("bench-admin@example.com", roles=["admin"])
        server.create_user("bench-user@example.com")
        token = server.login("bench-user@example.com", mode="token").json()["access_token"]
        admin = httpx.Client(base_url=server.url, timeout=30)
        admin_token = server.login("bench-admin@example.com", mode="token").json()["access_token"]
        admin.headers["Authorization"] = f"Bearer {admin_token}"

        def publish_watchword(size: int) -> Any:
            def send(marker: str) -> float:
                started = time.monotonic()
                response = admin.post(
                    "/v1/realtime/publish",
                    json={
                        "channel": channel_for(size, total),
                        "event": "bench",
                        "data": {"m": marker},
                    },
                )
                response.raise_for_status()
                return started

            return send

        clients = Clients(args.processes)
        try:
            before = rss_kib(server.process.pid)
            started = time.monotonic()
            opened = clients.open(
                "watchword",
                server.url.replace("http", "ws") + "/v1/realtime",
                token,
                total,
                channels,
            )
            open_seconds = time.monotonic() - started
            time.sleep(2)
            after = rss_kib(server.process.pid)
            per_conn = (after - before) * 1024 / max(1, opened)
            print(
                f"(a) watchword: {opened} authenticated idle connections in {open_seconds:.1f}s;"
                f" server RSS {before // 1024} -> {after // 1024} MiB,"
                f" {per_conn / 1024:.1f} KiB per connection",
                flush=True,
            )
            ww_times = fanout_rounds(clients, sizes, args.rounds, publish_watchword)
        finally:
            clients.close()
            admin.close()
        revoked = asyncio.run(revocations(server, args.revocations))

    with SocketIOServer() as sio:
        assert sio.process is not None
        publisher = httpx.Client(base_url=sio.url, timeout=30)

        def publish_socketio(size: int) -> Any:
            def send(marker: str) -> float:
                started = time.monotonic()
                response = publisher.post(
                    "/publish", json={"channel": channel_for(size, total), "data": {"m": marker}}
                )
                response.raise_for_status()
                return started

            return send

        clients = Clients(args.processes)
        try:
            sio_before = rss_kib(sio.process.pid)
            sio_opened = clients.open(
                "socketio", sio.url.replace("http", "ws"), "", total, channels
            )
            time.sleep(2)
            sio_after = rss_kib(sio.process.pid)
            sio_per_conn = (sio_after - sio_before) * 1024 / max(1, sio_opened)
            print(
                f"(a) socket.io: {sio_opened} idle connections;"
                f" {sio_per_conn / 1024:.1f} KiB per connection",
                flush=True,
            )
            sio_times = fanout_rounds(clients, sizes, args.rounds, publish_socketio)
        finally:
            clients.close()
            publisher.close()

    for size in sizes:
        ww, so = ww_times[size], sio_times[size]
        rows.append(
            [
                size,
                args.rounds,
                ms(ww, 50),
                ms(ww, 99),
                ms(so, 50),
                ms(so, 99),
                f"{statistics.median(so) / statistics.median(ww):.2f}",
            ]
        )
    print_table(
        "(b) fan-out: publish request -> last subscriber received (ms)",
        [
            "subscribers",
            "rounds",
            "watchword p50",
            "p99",
            "socket.io p50",
            "p99",
            "socket.io/watchword (p50)",
        ],
        rows,
    )
    from_request = [r[0] for r in revoked]
    from_response = [r[1] for r in revoked]
    print_table(
        f"(c) revocation: logout -> socket closed with 4003, {len(revoked)} sessions (ms)",
        ["measured from", "p50", "p99", "max"],
        [
            [
                "logout request sent",
                ms(from_request, 50),
                ms(from_request, 99),
                f"{max(from_request) * 1000:.1f}",
            ],
            [
                "logout response received",
                ms(from_response, 50),
                ms(from_response, 99),
                f"{max(from_response) * 1000:.1f}",
            ],
        ],
    )
    print_table(
        "(a) idle connections: server memory",
        ["server", "connections", "KiB per connection"],
        [
            ["watchword (authenticated, bearer)", opened, f"{per_conn / 1024:.1f}"],
            ["python-socketio (no auth)", sio_opened, f"{sio_per_conn / 1024:.1f}"],
        ],
    )


if __name__ == "__main__":
    if os.environ.get("WATCHWORD_BENCH_DEBUG"):
        print(sys.argv, flush=True)
    main()
