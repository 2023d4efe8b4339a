"""GET /v1/me per authentication method, beside an unauthenticated endpoint, in one run.

The ratio column is each row's throughput over the unauthenticated endpoint of the same
server: what authentication costs. Run: `python -m bench.suite_http [--duration S]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from bench import machines
from bench.common import POSTGRES_URL, LoadResult, Server, postgres_database, print_table, wrk

EMAIL = "bench@example.com"


@dataclass(frozen=True)
class Scenario:
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
    """issue 3: a JWT access token from a token-mode sign-in (verified once, then cached;
    the revoked-session and revoked-token checks still run on every request)."""
    token = server.login(EMAIL, device_name="bench", mode="token").json()["access_token"]
    return "/v1/me", {"Authorization": f"Bearer {token}"}


# Later issues add their methods here (bearer token, API key, ...), in the same run.
SCENARIOS: list[Scenario] = [
    Scenario("unauthenticated GET /healthz", unauthenticated),
    Scenario("cookie session GET /v1/me", cookie),
    Scenario("bearer JWT GET /v1/me", bearer),  # issue 3
    Scenario("API key GET /v1/me", machines.api_key),  # issue 4
]


def run_backend(label: str, env: dict[str, str], duration: float) -> list[list[object]]:
    rows: list[list[object]] = []
    with Server(env=env) as server:
        server.create_user(EMAIL)
        prepared = [(s, *s.prepare(server)) for s in SCENARIOS]
        for _, path, headers in prepared:  # warm caches and the JIT-less interpreter alike
            wrk(server.url + path, headers=headers, duration=1)
        baseline: LoadResult | None = None
        for scenario, path, headers in prepared:
            result = wrk(server.url + path, headers=headers, duration=duration)
            baseline = baseline or result
            rows.append(
                [
                    label,
                    scenario.name,
                    result.rps,
                    result.p50_ms,
                    result.p99_ms,
                    f"{result.rps / baseline.rps:.2f}",
                    result.errors,
                ]
            )
        # issue 4: a signed request needs a fresh nonce each time, which wrk cannot sign.
        rows += machines.python_loop_rows(label, server, duration)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    rows = run_backend("sqlite", {}, args.duration)
    if not args.no_postgres:
        with postgres_database(POSTGRES_URL) as url:
            if url is not None:
                rows += run_backend("postgresql", {"WATCHWORD_DATABASE_URL": url}, args.duration)
    print_table(
        "GET /v1/me by authentication method (wrk, 1 thread, 32 connections, loopback)",
        ["backend", "scenario", "req/s", "p50 ms", "p99 ms", "vs unauth", "errors"],
        rows,
    )


if __name__ == "__main__":
    main()
