"""GET /v1/me per authentication method beside the same server's /healthz, in one run.

The server runs as shipped (default logging included) pinned to core 0; wrk runs on core 1
with 64 connections. Each row's throughput over /healthz is what authentication costs, and
``1e6/auth_rps - 1e6/healthz_rps`` is that cost in microseconds of one core per request.
Also: p99 over p50 at 64 connections (stalls), two workers against one on both cores, a
storm of password sign-ins against /v1/me's p99, and the peers: Watchword's cookie and bearer
GET /v1/me beside the frameworks a Python team would pick instead, Flask-Login (with
Flask-Session in Redis, under gunicorn) and fastapi-users (JWT bearer, and database tokens in
a cookie, under uvicorn), each beside its own bare route, measured the same way in the same
run. The peers run from their own pinned environment (bench/peers, made on first use); when it
cannot be made, the peers table says why and counts an error.

Run: `python -m bench.suite_http [--duration S] [--rounds N] [--no-postgres]
[--only methods|workers|storm|peers|instructions]`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import instructions, machines
from bench.common import (
    PASSWORD,
    POSTGRES_URL,
    LoadResult,
    Server,
    machine_cpu_seconds,
    postgres_database,
    print_table,
    tree_cpu_seconds,
    wrk,
)
from bench.peers import runner as peers
from bench.results import count_errors, record

EMAIL = "bench@example.com"
CONNECTIONS = 64
SERVER_CPU = "0"
LOAD_CPU = "1"
REDIS_URL = os.environ.get("WATCHWORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STORM_LOGINS = 50


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    # Given the running server, returns (path, headers) for wrk.
    prepare: Callable[[Server], tuple[str, dict[str, str]]]


def unauthenticated(server: Server) -> tuple[str, dict[str, str]]:
    return "/healthz", {}


def cookie(server: Server) -> tuple[str, dict[str, str]]:
    response = server.login(EMAIL, device_name="bench")
    name, value = next(iter(response.cookies.items()))
    return "/v1/me", {"Cookie": f"{name}={value}"}


def bearer(server: Server) -> tuple[str, dict[str, str]]:
    """A JWT access token from a token-mode sign-in (verified once, then cached; the
    revoked-session and revoked-token checks still run on every request)."""
    token = server.login(EMAIL, device_name="bench", mode="token").json()["access_token"]
    return "/v1/me", {"Authorization": f"Bearer {token}"}


SCENARIOS: list[Scenario] = [
    Scenario("healthz", "unauthenticated GET /healthz", unauthenticated),
    Scenario("cookie", "cookie session GET /v1/me", cookie),
    Scenario("bearer", "bearer JWT GET /v1/me", bearer),
    Scenario("apikey", "API key GET /v1/me", machines.api_key),
]


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    cpu_us: float  # server CPU time per request, microseconds
    loop_stalls: int = 0  # the server's lag timer woke more than STALL_S late
    # ms per second of the run the server's loop was ready to run but its core ran another
    # thread (its own log writer, another program), and ms per second the hypervisor took it
    waiting_ms_per_s: float = 0.0
    stolen_ms_per_s: float = 0.0


STALL_S = "0.025"  # a bucket bound of watchword_event_loop_lag_seconds


def loop_stalls(server: Server) -> int:
    """How often the server's event loop has been held more than STALL_S since it started
    (web/loop_lag.py): a slow p99 with none of these was not the server's loop."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    values = {
        sample.name + sample.labels.get("le", ""): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "watchword_event_loop_lag_seconds"
        for sample in family.samples
    }
    return int(
        values["watchword_event_loop_lag_seconds_count"]
        - values["watchword_event_loop_lag_seconds_bucket" + STALL_S]
    )


class Measurable(Protocol):
    """A running server on one process tree: Watchword's ``Server`` or a ``PeerServer``."""

    url: str

    def cpu_seconds(self) -> float: ...


def measured_wrk(
    server: Measurable, path: str, headers: dict[str, str], duration: float
) -> Measured:
    """wrk as ``pinned_wrk``, plus the server's own CPU time per request over the run."""
    before = server.cpu_seconds()
    load = pinned_wrk(server.url + path, headers, duration)
    cpu = server.cpu_seconds() - before
    return Measured(load, cpu * 1e6 / load.requests if load.requests else float("inf"))


def measured_pinned(
    server: Server, path: str, headers: dict[str, str], duration: float
) -> Measured:
    """``measured_wrk`` on Watchword's pinned server, with what else held its core meanwhile:
    loop stalls, the loop thread's run-queue wait and the hypervisor's steal."""
    stalls, waiting, stolen = loop_stalls(server), server.waiting_seconds(), server.stolen_seconds()
    started = time.monotonic()
    measured = measured_wrk(server, path, headers, duration)
    per_s = 1e3 / (time.monotonic() - started)
    return dataclasses.replace(
        measured,
        loop_stalls=loop_stalls(server) - stalls,
        waiting_ms_per_s=(server.waiting_seconds() - waiting) * per_s,
        stolen_ms_per_s=(server.stolen_seconds() - stolen) * per_s,
    )


@dataclass(frozen=True)
class Bracketed:
    """A scenario's run and the ``/healthz`` runs just before and after it."""

    run: Measured
    before: Measured
    after: Measured

    @property
    def healthz_rps(self) -> float:
        return (self.before.load.rps + self.after.load.rps) / 2

    @property
    def healthz_cpu_us(self) -> float:
        return (self.before.cpu_us + self.after.cpu_us) / 2

    @property
    def ratio(self) -> float:
        return self.run.load.rps / self.healthz_rps

    @property
    def cost_us(self) -> float:
        return 1e6 / self.run.load.rps - 1e6 / self.healthz_rps

    @property
    def cpu_ratio(self) -> float:
        return self.healthz_cpu_us / self.run.cpu_us

    @property
    def cpu_cost_us(self) -> float:
        return self.run.cpu_us - self.healthz_cpu_us


def _median(runs: list[LoadResult]) -> LoadResult:
    ordered = sorted(runs, key=lambda r: r.rps)
    mid = ordered[len(ordered) // 2]
    return LoadResult(
        rps=mid.rps,
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=sum(r.requests for r in runs),
        errors=sum(r.errors for r in runs),
    )


def pinned_wrk(url: str, headers: dict[str, str], duration: float) -> LoadResult:
    return wrk(url, headers=headers, duration=duration, connections=CONNECTIONS, cpus=LOAD_CPU)


def run_backend(
    label: str, env: dict[str, str], duration: float, rounds: int
) -> list[list[object]]:
    """Scenarios interleaved round by round, each run between two ``/healthz`` runs; a
    scenario's ratio (and auth cost) is taken against the mean of the two ``/healthz`` runs
    around it, and the figure shown is the median over the rounds. On a shared machine whose
    speed drifts by the minute, a ratio then compares runs a few seconds apart, not a
    scenario's median against a ``/healthz`` median made of other minutes. req/s, latencies
    and CPU per request are medians over a row's own runs."""
    rows: list[list[object]] = []
    with Server(env=env, cpus=SERVER_CPU) as server:
        server.create_user(EMAIL)
        prepared = [(s, *s.prepare(server)) for s in SCENARIOS]
        for _, path, headers in prepared:  # warm every cache before measuring
            pinned_wrk(server.url + path, headers, 1)
        results: list[list[Measured]] = [[] for _ in prepared]
        brackets: list[list[Bracketed]] = [[] for _ in prepared]
        _, healthz_path, healthz_headers = prepared[0]
        for _ in range(rounds):
            before = measured_pinned(server, healthz_path, healthz_headers, duration)
            results[0].append(before)
            for i, (_, path, headers) in enumerate(prepared[1:], start=1):
                measured = measured_pinned(server, path, headers, duration)
                after = measured_pinned(server, healthz_path, healthz_headers, duration)
                results[i].append(measured)
                results[0].append(after)
                brackets[i].append(Bracketed(measured, before, after))
                before = after
        medians = [_median([m.load for m in r]) for r in results]
        cpus = [statistics.median(m.cpu_us for m in r) for r in results]
        stalls = [sum(m.loop_stalls for m in r) for r in results]
        waits = [statistics.median(m.waiting_ms_per_s for m in r) for r in results]
        steals = [statistics.median(m.stolen_ms_per_s for m in r) for r in results]
        for (scenario, _, _), result, cpu, held, waited, stolen, bracketed in zip(
            prepared, medians, cpus, stalls, waits, steals, brackets, strict=True
        ):
            tail = result.p99_ms / result.p50_ms if result.p50_ms else float("inf")
            prefix = f"http.{label}.{scenario.key}"
            count_errors(prefix + ".errors", result.errors)
            record(f"{prefix}_rps", result.rps)
            record(f"{prefix}_p99_over_p50", tail)
            record(f"{prefix}_cpu_us_per_request", cpu)
            record(f"{prefix}_loop_stalls_over_25ms", held)
            record(f"{prefix}_waiting_ms_per_s", waited)
            record(f"{prefix}_stolen_ms_per_s", stolen)
            against = "-", "-", "-", "-"
            if scenario.key != "healthz":
                ratio = statistics.median(b.ratio for b in bracketed)
                cost_us = statistics.median(b.cost_us for b in bracketed)
                cpu_ratio = statistics.median(b.cpu_ratio for b in bracketed)
                cpu_cost_us = statistics.median(b.cpu_cost_us for b in bracketed)
                record(f"{prefix}_vs_healthz", ratio)
                record(f"{prefix}_auth_cost_us", cost_us)
                # The same cost from the server's CPU time: steady when other work shares
                # the core (wrk's figure then counts the time the server was not running).
                record(f"{prefix}_auth_cpu_us", cpu_cost_us)
                record(f"{prefix}_cpu_vs_healthz", cpu_ratio)
                against = f"{ratio:.2f}", f"{cost_us:.0f}", f"{cpu_ratio:.2f}", f"{cpu_cost_us:.0f}"
            rows.append(
                [
                    label,
                    scenario.name,
                    result.rps,
                    result.p50_ms,
                    result.p99_ms,
                    f"{tail:.1f}",
                    "1.00" if scenario.key == "healthz" else against[0],
                    against[1],
                    f"{cpu:.0f}",
                    against[2],
                    against[3],
                    held,
                    f"{waited:.0f}",
                    f"{stolen:.0f}",
                    result.errors,
                ]
            )
        if label == "sqlite":
            # A signed request needs a fresh nonce each time, which wrk cannot sign.
            for row in machines.python_loop_rows(label, server, duration):
                count_errors(f"http.{label}.python_loop.errors", int(row[-1]))  # type: ignore[call-overload]
                rows.append([*row[:5], "-", row[5], *["-"] * 7, row[-1]])
    return rows


WORKERS_COLUMNS = ["workers", "req/s", "p50 ms", "p99 ms", "server us/req", "rest us/req"]
WORKERS_COLUMNS += ["idle", "errors"]


def workers_scaling(duration: float, rounds: int) -> list[list[object]]:
    """Bearer GET /v1/me with one worker and with two, on both cores (wrk beside them).

    Both servers run side by side and their runs alternate, one worker first and last: the
    ratio is each run of two against the mean of the runs of one just before and after it,
    median over the rounds, so a neighbour's burst weighs on both sides of it."""
    servers: dict[int, Server] = {}
    with contextlib.ExitStack() as stack:
        for workers in (1, 2):
            try:
                servers[workers] = Server(workers=workers).start()
            except RuntimeError as exc:
                # Counted and shown, so the run fails loudly, and the tables after this one
                # are still measured.
                count_errors(f"http.workers{workers}.start_failures", 1)
                print(f"(workers={workers}: the server did not start: {str(exc)[-300:]})")
                return [[workers, "-", "-", "-", "-", "-", "-", "did not start"]]
            stack.enter_context(contextlib.closing(servers[workers]))
        targets: dict[int, tuple[str, dict[str, str]]] = {}
        for workers, server in servers.items():
            server.create_user(EMAIL)
            path, headers = bearer(server)
            targets[workers] = (server.url + path, headers)
            wrk(targets[workers][0], headers=headers, duration=1, connections=CONNECTIONS)
        runs: dict[int, list[SharedRun]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers, (url, headers) in targets.items():
                runs[workers].append(shared_wrk(servers[workers], url, headers, duration))
        # One more run of one worker: every run of two then has one of one before and after.
        url, headers = targets[1]
        runs[1].append(shared_wrk(servers[1], url, headers, duration))
    rows: list[list[object]] = []
    for workers, results in runs.items():
        result = _median([r.load for r in results])
        server_us = statistics.median(r.server_us for r in results)
        rest_us = statistics.median(r.rest_us for r in results)
        idle = statistics.median(r.idle_share for r in results)
        count_errors(f"http.workers{workers}.errors", result.errors)
        record(f"http.workers{workers}.server_cpu_us_per_req", server_us)
        record(f"http.workers{workers}.rest_cpu_us_per_req", rest_us)
        record(f"http.workers{workers}.idle_share", idle)
        cpu = [f"{server_us:.0f}", f"{rest_us:.0f}", f"{idle:.0%}"]
        rows.append([workers, result.rps, result.p50_ms, result.p99_ms, *cpu, result.errors])
    # Each run of two workers against the mean of the runs of one around it, median over
    # the rounds: a machine whose speed drifts weighs on both sides of each ratio.
    ones, twos = [r.load.rps for r in runs[1]], [r.load.rps for r in runs[2]]
    scaling = statistics.median(two / ((ones[i] + ones[i + 1]) / 2) for i, two in enumerate(twos))
    record("http.workers2_vs_workers1", scaling)
    rows.append(["2 / 1", f"{scaling:.2f}", *[""] * 6])
    return rows


@dataclass(frozen=True)
class SharedRun:
    """A wrk run on cores the server shares with it, and where the machine's CPU went."""

    load: LoadResult
    server_us: float  # the server's process tree, per request
    rest_us: float  # everything else busy (wrk, the kernel's loopback work), per request
    idle_share: float  # of all cores' time, left idle


def shared_wrk(server: Server, url: str, headers: dict[str, str], duration: float) -> SharedRun:
    assert server.process is not None
    own, (busy, idle) = tree_cpu_seconds(server.process.pid), machine_cpu_seconds()
    load = wrk(url, headers=headers, duration=duration, connections=CONNECTIONS)
    own = tree_cpu_seconds(server.process.pid) - own
    after_busy, after_idle = machine_cpu_seconds()
    busy, idle = after_busy - busy, after_idle - idle
    per_request = 1e6 / load.requests if load.requests else float("inf")
    return SharedRun(load, own * per_request, (busy - own) * per_request, idle / (busy + idle))


def login_storm(duration: float, rounds: int) -> list[list[object]]:
    """/v1/me's p99 idle, then while 50 password sign-ins run at once, in interleaved rounds
    (medians: one run's p99 moves with whatever else the machine does in those seconds)."""
    idle_runs: list[LoadResult] = []
    storm_runs: list[LoadResult] = []
    logins = {"ok": 0, "failed": 0}
    with Server(cpus=SERVER_CPU) as server:
        server.create_user(EMAIL)
        path, headers = bearer(server)
        url = server.url + path
        pinned_wrk(url, headers, 1)
        for _ in range(rounds):
            idle_runs.append(pinned_wrk(url, headers, duration))
            with sign_in_storm(server.url, seconds=duration + 1.5) as counts:
                time.sleep(1.0)  # the storm is under way before the measurement starts
                storm_runs.append(pinned_wrk(url, headers, duration))
            for outcome, count in counts.items():
                logins[outcome] += count
    idle, during = _median(idle_runs), _median(storm_runs)
    count_errors("http.login_storm.errors", idle.errors + during.errors + logins["failed"])
    ratio = during.p99_ms / idle.p99_ms
    record("http.login_storm_p99_ratio", ratio)
    return [
        ["idle", idle.rps, idle.p50_ms, idle.p99_ms, "-", idle.errors],
        [
            f"{STORM_LOGINS} concurrent sign-ins",
            during.rps,
            during.p50_ms,
            during.p99_ms,
            logins["ok"],
            during.errors + logins["failed"],
        ],
        ["p99 storm / idle", "", "", f"{ratio:.2f}", "", ""],
    ]


@contextlib.contextmanager
def sign_in_storm(base_url: str, *, seconds: float) -> Iterator[dict[str, int]]:
    """``bench.sign_in_storm`` beside wrk on the load core, below its priority (that module
    says why); the dict holds the sign-ins that succeeded and failed once the block ends."""
    counts: dict[str, int] = {}
    storm = subprocess.Popen(
        [
            *["taskset", "-c", LOAD_CPU, "nice", "-n", "19"],
            sys.executable,
            "-m",
            "bench.sign_in_storm",
            base_url,
            EMAIL,
            "--password-stdin",
            f"--clients={STORM_LOGINS}",
            f"--seconds={seconds}",
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert storm.stdin is not None and storm.stdout is not None
    storm.stdin.write(PASSWORD + "\n")
    storm.stdin.close()
    try:
        yield counts
    finally:
        out = storm.stdout.read()
        storm.wait(timeout=120)
    counts.update(json.loads(out) if storm.returncode == 0 else {"failed": STORM_LOGINS})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    # Five: on a noisy host one disturbed round of three moved a ratio by 0.05; a median of
    # five rounds is not moved by two.
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only these tables (repeatable); default: all of them",
    )
    args = parser.parse_args(argv)
    parts = args.only or PARTS
    if "methods" in parts:
        methods_table(args)
    if "workers" in parts:
        print_table(
            "Workers: bearer GET /v1/me, 2 cores, wrk on the same machine (medians of"
            f" {args.rounds} interleaved rounds; server us/req = the server's processes' CPU"
            " time per request, rest us/req = every other busy CPU time of the machine per"
            " request: wrk, the kernel's loopback work, neighbours; idle = share of both cores"
            " left idle; 2 / 1 = median over the rounds of each run of two workers against"
            " the mean of the runs of one just before and after it)",
            WORKERS_COLUMNS,
            workers_scaling(args.duration, args.rounds),
        )
    if "storm" in parts:
        print_table(
            f"Login storm: bearer GET /v1/me p99 while {STORM_LOGINS} password sign-ins run"
            f" (medians of {args.rounds} rounds; sign-ins: all rounds together; the sign-in"
            " clients run beside wrk, below its priority)",
            ["phase", "req/s", "p50 ms", "p99 ms", "sign-ins", "errors"],
            login_storm(args.duration, args.rounds),
        )
    if "peers" in parts:
        peers_table(args)
    if "instructions" in parts:
        instructions_table(args)


PARTS = ["methods", "workers", "storm", "peers", "instructions"]


def instructions_table(args: argparse.Namespace) -> None:
    """The methods table's scenarios on SQLite, counted in instructions (bench/instructions.py)."""
    title = (
        "Instructions per request (callgrind, user space; the server under it, wrk -c64 for"
        f" {2 * args.duration:.0f} s per row after a warm-up; steady however busy the host;"
        " valgrind runs OpenSSL's SHA-256 without the CPU's SHA instructions: a bearer token's"
        " ten blocks past the first count about 18,000 instructions, 0.6 us natively)"
    )
    columns = ["scenario", "requests", "instructions/req", "vs /healthz", "auth instr", "errors"]
    reason = instructions.unavailable()
    if reason is not None:
        print(f"\n{title}\n(not counted: {reason})")
        count_errors("http.instructions.unavailable", 1)
        return
    rows: list[list[object]] = []
    with contextlib.closing(instructions.CountingServer().start()) as server:
        server.create_user(EMAIL)
        prepared = [(s, *s.prepare(server)) for s in SCENARIOS]
        counted = [(s, server.count(path, h, 2 * args.duration)) for s, path, h in prepared]
    healthz = counted[0][1].per_request
    for scenario, result in counted:
        prefix = f"http.sqlite.{scenario.key}"
        count_errors(prefix + ".instructions_errors", result.load.errors)
        record(f"{prefix}_instructions_per_request", result.per_request)
        measured = scenario.key != "healthz"
        if measured:
            record(f"{prefix}_instructions_vs_healthz", healthz / result.per_request)
        rows.append(
            [
                scenario.name,
                result.load.requests,
                f"{result.per_request:,.0f}",
                f"{healthz / result.per_request:.3f}" if measured else "-",
                f"{result.per_request - healthz:,.0f}" if measured else "-",
                result.load.errors,
            ]
        )
    print_table(title, columns, rows)


def methods_table(args: argparse.Namespace) -> None:
    rows = run_backend("sqlite", {}, args.duration, args.rounds)
    if not args.no_postgres:
        with postgres_database(POSTGRES_URL) as url:
            if url is not None:
                env = {"WATCHWORD_DATABASE_URL": url, "WATCHWORD_REDIS_URL": REDIS_URL}
                rows += run_backend("postgres", env, args.duration, args.rounds)
    print_table(
        f"GET /v1/me by authentication method (server pinned to one core, wrk -c{CONNECTIONS}"
        " on another, loopback; interleaved rounds, each scenario run between two /healthz runs;"
        " vs /healthz, auth us (1e6/rps - 1e6/healthz) and their CPU columns are medians over"
        " the rounds of each run against the mean of the two /healthz runs around it; cpu"
        " us/req = the server's CPU time per request, auth cpu us = its excess over"
        " /healthz; loop stalls = times the server's event loop was held over 25 ms, all"
        " rounds; waiting = ms per second its loop was ready to run while its core ran another"
        " thread, its own log writer's included; stolen = ms per second the hypervisor gave"
        " its core to another machine; both medians of the rounds)",
        [
            "backend",
            "scenario",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99/p50",
            "vs /healthz",
            "auth us",
            "cpu us/req",
            "cpu vs /healthz",
            "auth cpu us",
            "loop stalls",
            "waiting ms/s",
            "stolen ms/s",
            "errors",
        ],
        rows,
    )


# The peers table. Each row is measured against its own server's bare route (auth us), and each
# peer row against the Watchword row doing the same job (Watchword / peer).


@dataclass(frozen=True)
class PeerCase:
    key: str  # under http.peers.
    framework: str
    name: str
    server: Measurable
    path: str
    headers: dict[str, str]
    bare: str | None  # the key of its own server's bare route; None for that route itself
    watchword: str | None  # the key of the Watchword row it is compared with


PEER_AIMS = "aims: Watchword at least 5x Flask-Login and 12x fastapi-users on the same request"
PEER_COLUMNS = [
    "framework",
    "scenario",
    "req/s",
    "p50 ms",
    "p99 ms",
    "auth us",
    "cpu us/req",
    "auth cpu us",
    "errors",
    "Watchword / this",
    "by cpu",
]


def peers_title() -> str:
    return (
        "Peers: the same request on Watchword and on the frameworks a Python team would pick"
        f" instead (each server pinned to core 0, wrk -c{CONNECTIONS} on core 1, loopback;"
        " medians of interleaved rounds; auth us = 1e6/rps - 1e6/its own bare rps; cpu us/req"
        " = the server's process tree's CPU time per request; Watchword / this = Watchword's"
        " req/s over this row's, by cpu = this row's cpu us/req over Watchword's)"
    )


def peers_table(args: argparse.Namespace) -> None:
    try:
        bin_dir = peers.ensure_environment()
        rows = run_peers(bin_dir, args.duration, args.rounds)
    except (peers.PeersUnavailable, RuntimeError, httpx.HTTPError) as exc:
        # Counted, so `python -m bench` fails loudly; the suite goes on.
        count_errors("http.peers.setup_failures", 1)
        print(f"\n{peers_title()}\n(peers not measured: {str(exc)[-1500:]})", flush=True)
        return
    print_table(peers_title(), PEER_COLUMNS, rows)
    print(f"({PEER_AIMS}: printed, not asserted)", flush=True)


def run_peers(bin_dir: Path, duration: float, rounds: int) -> list[list[object]]:
    """Watchword, Flask-Login and fastapi-users up at once, each pinned to core 0 (the two
    not measured sit idle), every scenario warmed, then rounds interleaved across all."""
    with contextlib.ExitStack() as stack:
        watchword = stack.enter_context(Server(cpus=SERVER_CPU))
        watchword.create_user(EMAIL)
        flask = stack.enter_context(peers.flask_login(bin_dir, REDIS_URL, SERVER_CPU))
        fastapi = stack.enter_context(peers.fastapi_users(bin_dir, SERVER_CPU))
        cases = [
            PeerCase(
                "watchword_healthz",
                "Watchword",
                "GET /healthz (bare)",
                watchword,
                *unauthenticated(watchword),
                None,
                None,
            ),
            PeerCase(
                "watchword_cookie",
                "Watchword",
                "cookie session GET /v1/me",
                watchword,
                *cookie(watchword),
                "watchword_healthz",
                None,
            ),
            PeerCase(
                "watchword_bearer",
                "Watchword",
                "bearer JWT GET /v1/me",
                watchword,
                *bearer(watchword),
                "watchword_healthz",
                None,
            ),
            PeerCase(
                "flask_login_bare",
                "Flask-Login",
                "GET /healthz (bare)",
                flask,
                *peers.bare(flask),
                None,
                "watchword_healthz",
            ),
            PeerCase(
                "flask_login",
                "Flask-Login",
                "Flask-Session (Redis) cookie GET /me",
                flask,
                *peers.flask_login_cookie(flask),
                "flask_login_bare",
                "watchword_cookie",
            ),
            PeerCase(
                "fastapi_users_bare",
                "fastapi-users",
                "GET /healthz (bare)",
                fastapi,
                *peers.bare(fastapi),
                None,
                "watchword_healthz",
            ),
            PeerCase(
                "fastapi_users_jwt",
                "fastapi-users",
                "JWT bearer GET /users/me",
                fastapi,
                *peers.fastapi_users_jwt(fastapi),
                "fastapi_users_bare",
                "watchword_bearer",
            ),
            PeerCase(
                "fastapi_users_db",
                "fastapi-users",
                "database token cookie GET /users/me",
                fastapi,
                *peers.fastapi_users_cookie(fastapi),
                "fastapi_users_bare",
                "watchword_cookie",
            ),
        ]
        warm_errors = [pinned_wrk(c.server.url + c.path, c.headers, 1).errors for c in cases]
        runs: list[list[Measured]] = [[] for _ in cases]
        for _ in range(rounds):
            for i, case in enumerate(cases):
                runs[i].append(measured_wrk(case.server, case.path, case.headers, duration))
    loads = {c.key: _median([m.load for m in r]) for c, r in zip(cases, runs, strict=True)}
    cpus = {c.key: statistics.median(m.cpu_us for m in r) for c, r in zip(cases, runs, strict=True)}
    rows: list[list[object]] = []
    for case, warm in zip(cases, warm_errors, strict=True):
        load, cpu = loads[case.key], cpus[case.key]
        prefix = f"http.peers.{case.key}"
        errors = load.errors + warm  # the warm-up counts too: any non-2xx is a finding
        count_errors(prefix + ".errors", errors)
        record(prefix + "_rps", load.rps)
        record(prefix + "_p50_ms", load.p50_ms)
        record(prefix + "_p99_ms", load.p99_ms)
        record(prefix + "_cpu_us_per_request", cpu)
        auth_us = auth_cpu = "-"
        if case.bare is not None:
            cost = 1e6 / load.rps - 1e6 / loads[case.bare].rps
            cost_cpu = cpu - cpus[case.bare]
            record(prefix + "_auth_cost_us", cost)
            record(prefix + "_auth_cpu_us", cost_cpu)
            auth_us, auth_cpu = f"{cost:.0f}", f"{cost_cpu:.0f}"
        ratio = by_cpu = "-"
        if case.watchword is not None:
            rps_ratio = loads[case.watchword].rps / load.rps
            cpu_ratio = cpu / cpus[case.watchword]
            stem = f"http.peers.{case.watchword}_vs_{case.key}"
            record(stem, rps_ratio)
            record(stem + "_cpu", cpu_ratio)
            ratio, by_cpu = f"{rps_ratio:.1f}x", f"{cpu_ratio:.1f}x"
        rows.append(
            [
                case.framework,
                case.name,
                load.rps,
                load.p50_ms,
                load.p99_ms,
                auth_us,
                f"{cpu:.0f}",
                auth_cpu,
                errors,
                ratio,
                by_cpu,
            ]
        )
    return rows


if __name__ == "__main__":
    main()
