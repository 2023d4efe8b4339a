"""What a sign-out costs the server: ``POST /v1/auth/logout`` answered one after another.

A real ``watchword serve`` on the embedded default (SQLite, in-process bus). Sessions are
signed in for tokens first (their access tokens used once, as a client would), then each is
signed out with its own bearer token, one request at a time. The latency runs from the request
sent to the response read; the server's CPU time (every thread, its SQLite connections' too)
is read before and after the sign-outs and divided by their number, so it holds what each
sign-out set going in the background as well (control feed, back-channel outbox). A sign-out's
work is on the path of every revocation the realtime suite times from the request.
Run: `python -m bench.suite_logout [--logouts N]`.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.common import Server, print_table
from bench.results import count_errors, percentile, record

EMAIL = "bench-logout@example.com"
SETTLE_S = 1.0  # after the sign-ins: their argon2 work and last-seen writes are done


def measure(server: Server, logouts: int) -> tuple[list[float], float, int]:
    """Latencies (ms), server CPU ms per sign-out, and how many were not answered 200."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tokens = [
            server.login(EMAIL, device_name="bench", mode="token").json()["access_token"]
            for _ in range(logouts)
        ]
        for token in tokens:
            http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        time.sleep(SETTLE_S)
        latencies: list[float] = []
        errors = 0
        cpu_before = server.cpu_seconds()
        for token in tokens:
            sent = time.perf_counter()
            response = http.post("/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += response.status_code != 200
        cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / logouts
    return latencies, cpu_ms, errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_logout")
    parser.add_argument("--logouts", type=int, default=200, help="sessions signed out (>= 100)")
    args = parser.parse_args(argv)
    if args.logouts < 100:
        parser.error("--logouts must be at least 100: the p99 needs 100 samples")
    with Server() as server:
        server.create_user(EMAIL)
        latencies, cpu_ms, errors = measure(server, args.logouts)
    count_errors("logout.embedded.non_200", errors)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    record("logout.embedded.p50_ms", p50)
    record("logout.embedded.p99_ms", p99)
    record("logout.embedded.server_cpu_ms", cpu_ms)
    print_table(
        "POST /v1/auth/logout, one after another (ms from the request sent; server CPU per"
        " sign-out, background work it set going included)",
        ["server", "n", "non-200", "p50 ms", "p99 ms", "max ms", "server cpu ms"],
        [
            [
                "embedded default (SQLite, in-process bus)",
                len(latencies),
                errors,
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{max(latencies):.2f}",
                f"{cpu_ms:.2f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
