"""GET /v1/me per authentication method, beside an unauthenticated endpoint, in one run.

Two unauthenticated baselines on the same server: /healthz (a trivial answer) and the RFC 8414
metadata document (a JSON answer about as large as /v1/me's). Each row's throughput over
them is what authentication (and, against /healthz, the larger answer) costs.
Run: `python -m bench.suite_http [--duration S] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import statistics
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


def metadata(server: Server) -> tuple[str, dict[str, str]]:
    """An unauthenticated JSON document about the size of /v1/me's answer (RFC 8414)."""
    return "/.well-known/oauth-authorization-server", {}


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
    Scenario("unauthenticated GET /.well-known/oauth-authorization-server", metadata),
    Scenario("cookie session GET /v1/me", cookie),
    Scenario("bearer JWT GET /v1/me", bearer),  # issue 3
    Scenario("API key GET /v1/me", machines.api_key),  # issue 4
]


def run_backend(
    label: str, env: dict[str, str], duration: float, rounds: int
) -> list[list[object]]:
    """Scenarios interleaved round by round (so drift on a busy machine hits them alike);
    each figure is the median over the rounds."""
    rows: list[list[object]] = []
    with Server(env=env) as server:
        server.create_user(EMAIL)
        prepared = [(s, *s.prepare(server)) for s in SCENARIOS]
        for _, path, headers in prepared:  # warm every cache before measuring
            wrk(server.url + path, headers=headers, duration=1)
        results: list[list[LoadResult]] = [[] for _ in prepared]
        for _ in range(rounds):
            for i, (_, path, headers) in enumerate(prepared):
                results[i].append(wrk(server.url + path, headers=headers, duration=duration))
        medians = [_median(r) for r in results]
        healthz, document = medians[0], medians[1]
        for (scenario, _, _), result in zip(prepared, medians, strict=True):
            rows.append(
                [
                    label,
                    scenario.name,
                    result.rps,
                    result.p50_ms,
                    result.p99_ms,
                    f"{result.rps / healthz.rps:.2f}",
                    f"{result.rps / document.rps:.2f}",
                    result.errors,
                ]
            )
        # issue 4: a signed request needs a fresh nonce each time, which wrk cannot sign.
        rows += machines.python_loop_rows(label, server, duration)
    return rows


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    rows = run_backend("sqlite", {}, args.duration, args.rounds)
    if not args.no_postgres:
        with postgres_database(POSTGRES_URL) as url:
            if url is not None:
                rows += run_backend(
                    "postgresql", {"WATCHWORD_DATABASE_URL": url}, args.duration, args.rounds
                )
    print_table(
        "GET /v1/me by authentication method (wrk, 1 thread, 32 connections, loopback;"
        " medians of interleaved rounds)",
        [
            "backend",
            "scenario",
            "req/s",
            "p50 ms",
            "p99 ms",
            "vs /healthz",
            "vs metadata",
            "errors",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
