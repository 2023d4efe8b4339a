"""Revocation latency: from the revoking request's response to the SDK Verifier refusing the token.

A real ``watchword serve`` process issues the tokens and revokes them; this process runs the SDK
``Verifier``, fed by the server's SSE revocation stream (``GET /v1/revocations/stream``), and
polls it right after each revoking response until the token is refused. Two ways to revoke:
``POST /v1/auth/logout`` with the token itself, and ``DELETE /v1/sessions/{id}`` from another
session of the same user. Three feeds: the SSE stream of a server on the embedded default,
the same on a server using Redis, and ``RedisRevocationSource`` reading that Redis directly
(the Redis rows run when Redis is reachable). The clock starts when the revoking response has
been read, so a latency near zero means the event had already arrived.
Run: `python -m bench.suite_revocation [--revocations N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

from bench.common import PASSWORD, Server, print_table
from bench.results import count_errors
from watchword.sdk import RedisRevocationSource, TokenRevoked, Verifier, WatchwordClient

REDIS_URL = os.environ.get("WATCHWORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "bench-admin@example.com"
USER = "bench-user@example.com"
POLL = 0.00005  # seconds between polls; lets the feed thread take the GIL
GIVE_UP = 10.0  # seconds: a revocation slower than this is reported as lost


def wait_refused(verifier: Verifier, token: str, since: float) -> float | None:
    """Milliseconds from ``since`` until the verifier refuses ``token``; None if it never did."""
    while True:
        try:
            verifier.verify(token)
        except TokenRevoked:
            return (time.perf_counter() - since) * 1000
        if time.perf_counter() - since > GIVE_UP:
            return None
        time.sleep(POLL)


def measure(
    server: Server, verifier: Verifier, count: int, revoke: Callable[[WatchwordClient], None]
) -> tuple[list[float], int]:
    latencies: list[float] = []
    lost = 0
    for _ in range(count):
        with WatchwordClient(server.url, timeout=30) as ww:
            tokens = ww.login(USER, PASSWORD, device_name="bench")
            verifier.verify(tokens.access_token)  # accepted, and now in the verified cache
            revoke(ww)
            done = time.perf_counter()
            latency = wait_refused(verifier, tokens.access_token, done)
        if latency is None:
            lost += 1
        else:
            latencies.append(latency)
    return latencies, lost


def logout(ww: WatchwordClient) -> None:
    ww.logout()


def delete_from_another_session(other: WatchwordClient) -> Callable[[WatchwordClient], None]:
    def revoke(ww: WatchwordClient) -> None:
        assert ww.tokens is not None
        response = other.delete(f"/v1/sessions/{ww.tokens.session_id}")
        response.raise_for_status()
        ww.state.tokens = None  # the session is gone; nothing left to log out

    return revoke


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        print(f"(Redis unreachable at {url}: {exc}; skipping its rows)")
        return False
    return True


def run(
    label: str, env: dict[str, str], feed: Callable[[Server, str], Verifier], count: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    with Server(env=env) as server:
        server.create_user(ADMIN, roles=["admin"])
        server.create_user(USER)
        with (
            WatchwordClient(server.url, timeout=30) as admin,
            WatchwordClient(server.url, timeout=30) as other,
        ):
            admin.login(ADMIN, PASSWORD, device_name="bench feed owner")
            created = admin.post(
                "/v1/api-keys", json={"name": "bench feed", "scopes": "revocations:read"}
            )
            created.raise_for_status()
            other.login(USER, PASSWORD, device_name="bench revoker")
            with feed(server, created.json()["key"]) as verifier:
                if not verifier.wait_for_feed(30):
                    raise SystemExit(f"{label}: the revocation feed never synced")
                for name, revoke in (
                    ("POST /v1/auth/logout", logout),
                    ("DELETE /v1/sessions/{id}", delete_from_another_session(other)),
                ):
                    latencies, lost = measure(server, verifier, count, revoke)
                    count_errors(f"revocation.{label}.{name}.lost", lost)
                    rows.append(
                        [
                            label,
                            name,
                            len(latencies),
                            lost,
                            percentile(latencies, 50),
                            percentile(latencies, 99),
                            max(latencies),
                        ]
                    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--revocations", type=int, default=200, help="per row (>= 200)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args(argv)

    def sse(server: Server, key: str) -> Verifier:
        return Verifier(issuer=server.url, credential=key, max_feed_staleness=60)

    rows = run("SSE, embedded default (SQLite, in-process bus)", {}, sse, args.revocations)
    if redis_reachable(args.redis_url):
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        env = {"WATCHWORD_REDIS_URL": args.redis_url, "WATCHWORD_REDIS_PREFIX": prefix}

        def from_redis(server: Server, key: str) -> Verifier:
            source = RedisRevocationSource(args.redis_url, prefix=prefix)
            return Verifier(issuer=server.url, revocations=source, max_feed_staleness=60)

        rows += run("SSE, server on Redis", env, sse, args.revocations)
        rows += run("Redis source, server on Redis", env, from_redis, args.revocations)
    print_table(
        "Revocation reaching an SDK Verifier in another process (ms from the revoking response)",
        ["feed", "revoked by", "n", "lost", "p50 ms", "p99 ms", "max ms"],
        rows,
    )


if __name__ == "__main__":
    main()
