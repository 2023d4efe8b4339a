"""A storm of password sign-ins, as a process of its own: ``python -m bench.sign_in_storm``.

The login-storm table runs it beside wrk on the load generator's core, below wrk's priority.
The clients are load, not the server under test, and where they run moved /v1/me's p99 more
than the server did. Side by side on one machine: as 50 threads of the bench process, ratios
of 8.7 and 10.6 (1.35 to 8.3 with the threads moved to wrk's core at the lowest priority); as
a process free to run on either core at normal priority, 22 to 28; as this process beside
wrk at the lowest priority, 1.4 to 2.0, for as many sign-ins (the server's hashing sets the
pace, not the clients).

Prints one JSON object when the time is up: ``{"ok": N, "failed": N}``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import httpx


def storm(url: str, email: str, password: str, clients: int, seconds: float) -> dict[str, int]:
    """``clients`` threads, each signing in again and again until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def sign_in() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.post(
                        "/v1/auth/login",
                        json={"email": email, "password": password, "mode": "token"},
                    )
                    outcome = "ok" if response.status_code == 200 else "failed"
                except httpx.HTTPError:
                    outcome = "failed"
                with lock:
                    counts[outcome] += 1

    threads = [threading.Thread(target=sign_in) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("email")
    parser.add_argument("--password-stdin", action="store_true", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    password = input()
    print(json.dumps(storm(args.url, args.email, password, args.clients, args.seconds)))


if __name__ == "__main__":
    main()
