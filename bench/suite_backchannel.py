"""Back-channel logout latency: from the response that ends a session to the app's server
receiving the signed logout token (OpenID Connect Back-Channel Logout 1.0).

A real ``watchword serve`` on the embedded default (SQLite, in-process bus) and, in this
process, an app: a small HTTP server that receives logout tokens, and the code flow (PKCE)
run once per session so the app has signed in through it. Each round signs in, lets the app
sign in, then ``POST /v1/auth/logout``; the clock starts when that response has been read and
stops when the app's server has the logout token naming the session.
Run: `python -m bench.suite_backchannel [--logouts N]`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import queue
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from bench.common import PASSWORD, Server, print_table
from bench.results import count_errors, percentile, record

USER = "bench-user@example.com"
REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the redirect is read, not followed
GIVE_UP = 10.0  # seconds: a logout slower than this is reported as lost


def receiver() -> tuple[ThreadingHTTPServer, queue.Queue[tuple[float, str]]]:
    arrivals: queue.Queue[tuple[float, str]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            token = parse_qs(body.decode())["logout_token"][0]
            sid = jwt.decode(token, options={"verify_signature": False})["sid"]
            arrivals.put((time.perf_counter(), sid))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), arrivals


def app_signs_in(http: httpx.Client, client_id: str) -> str:
    """The code flow for a first-party app; returns the session id its ID token names."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    answer = http.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        },
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = httpx.post(
        str(http.base_url).rstrip("/") + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
        timeout=30,
    )
    tokens.raise_for_status()
    return str(jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})["sid"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--logouts", type=int, default=200, help="sessions ended (>= 100)")
    args = parser.parse_args(argv)
    httpd, arrivals = receiver()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    latencies: list[float] = []
    lost = 0
    with Server() as server:
        server.create_user(USER)
        created = json.loads(
            server.cli(
                "clients", "create", "--name", "bench app", "--type", "public",
                "--first-party", "--redirect-uri", REDIRECT,
                "--backchannel-logout-uri", f"http://127.0.0.1:{httpd.server_address[1]}/bc",
                "--json",
            )
        )  # fmt: skip
        for _ in range(args.logouts):
            with httpx.Client(base_url=server.url, timeout=30) as browser:
                signed_in = browser.post(
                    "/v1/auth/login", json={"email": USER, "password": PASSWORD}
                )
                signed_in.raise_for_status()
                sid = app_signs_in(browser, created["client_id"])
                out = browser.post(
                    "/v1/auth/logout", headers={"X-CSRF-Token": signed_in.json()["csrf_token"]}
                )
                out.raise_for_status()
                done = time.perf_counter()
            while True:
                try:
                    arrived, got = arrivals.get(
                        timeout=max(0.0, done + GIVE_UP - time.perf_counter())
                    )
                except queue.Empty:
                    lost += 1
                    break
                if got == sid:
                    latencies.append(max(0.0, (arrived - done) * 1000))
                    break
    httpd.shutdown()
    count_errors("backchannel.embedded.lost", lost)
    p50 = record("backchannel.embedded.p50_ms", percentile(latencies, 50))
    p99 = record("backchannel.embedded.p99_ms", percentile(latencies, 99))
    print_table(
        "Back-channel logout reaching the app (ms from the logout response)",
        ["server", "n", "lost", "p50 ms", "p99 ms", "max ms"],
        [["embedded default (SQLite, in-process bus)", len(latencies), lost, p50, p99,
          max(latencies)]],
    )  # fmt: skip


if __name__ == "__main__":
    main()
