"""Machine scenarios for ``bench.suite_http``: API key by wrk, and a signed request.

A signed request needs a fresh nonce (and ``created``) per request, which wrk cannot make: it
is measured with a Python load loop (httpx, asyncio, N connections), beside the cookie session
measured by the same loop, so the two rows of that table compare like with like. Python-loop
figures are bounded by the client's own CPU and are not comparable with the wrk rows.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable

import httpx

from bench.common import Server
from watchword.sdk.signing import HttpSignatureAuth

EMAIL = "bench@example.com"
LOOP_CONNECTIONS = 16


def api_key(server: Server) -> tuple[str, dict[str, str]]:
    out = server.cli("api-keys", "create", "--email", EMAIL, "--scopes", "profile", "--json")
    return "/v1/me", {"X-API-Key": json.loads(out)["key"]}


def _signing_auth(server: Server) -> HttpSignatureAuth:
    out = server.cli("signing-keys", "create", "--email", EMAIL, "--scopes", "profile", "--json")
    created = json.loads(out)
    return HttpSignatureAuth(created["key_id"], created["secret"])


def _cookie_headers(server: Server) -> dict[str, str]:
    response = server.login(EMAIL, device_name="bench-loop")
    name, value = next(iter(response.cookies.items()))
    return {"Cookie": f"{name}={value}"}


async def _loop(
    url: str, duration: float, make: Callable[[], tuple[dict[str, str], httpx.Auth | None]]
) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=LOOP_CONNECTIONS)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                headers, auth = make()
                started = time.perf_counter()
                response = await client.get(
                    url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(LOOP_CONNECTIONS)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000, errors


def python_loop_rows(label: str, server: Server, duration: float) -> list[list[object]]:
    """Cookie session and RFC 9421 signed request, each by the same Python load loop."""
    cookie = _cookie_headers(server)
    signing = _signing_auth(server)
    url = server.url + "/v1/me"
    rows: list[list[object]] = []
    baseline: float | None = None
    for name, make in (
        ("cookie session GET /v1/me (python httpx loop)", lambda: (cookie, None)),
        ("signed request GET /v1/me (python httpx loop)", lambda: ({}, signing)),
    ):
        asyncio.run(_loop(url, 1.0, make))  # warm-up
        rps, p50, p99, errors = asyncio.run(_loop(url, duration, make))
        baseline = baseline or rps
        ratio = f"{rps / baseline:.2f} of cookie"
        rows.append([label, name, rps, p50, p99, ratio, ratio, errors])
    return rows
