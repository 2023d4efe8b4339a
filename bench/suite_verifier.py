"""``Verifier.verify`` in-process against the raw Ed25519 check of the ``cryptography`` package.

The same tokens go through both: the raw row is ``public_key.verify(signature, signing_input)``
on each token's own parts, the floor any JWT library stands on. ``Verifier`` rows: each token
verified for the first time (signature, header and claim checks, revocation lookup), and a
repeat of a verified token (served from the bounded cache; the revocation check still runs).
The revocation list holds 10,000 revoked sessions so its lookup is part of every row.
Run: `python -m bench.suite_verifier [--tokens N]`.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import print_table
from watchword.sdk import RevocationSink, Verifier

ISSUER = "https://auth.bench"


class StaticFeed:
    """A revocation source that delivers one large snapshot and stays up."""

    def __init__(self, revoked_sessions: int) -> None:
        now = time.time()
        self.sessions = {uuid.uuid4().hex: now + 600 for _ in range(revoked_sessions)}

    def run(self, sink: RevocationSink, stop: threading.Event) -> None:
        sink.apply_snapshot(self.sessions, {})
        sink.feed_up()
        stop.wait()

    async def arun(self, sink: RevocationSink) -> None:
        sink.apply_snapshot(self.sessions, {})
        sink.feed_up()


def medians_us(rows: list[list[Callable[[], object]]], rounds: int) -> list[float]:
    """Median time of each column; the columns are interleaved call by call, so a noisy
    neighbour on the machine slows every column alike."""
    samples: list[list[int]] = [[] for _ in rows[0]]
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for row in rows:
            for column, call in enumerate(row):
                start = clock()
                call()
                samples[column].append(clock() - start)
    return [statistics.median(column) / 1000 for column in samples]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    jwk = {**jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True), "kid": "k1", "alg": "EdDSA"}

    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": [jwk]})

    now = int(time.time())
    tokens = [
        jwt.encode(
            {
                "iss": ISSUER,
                "sub": f"user-{i}",
                "aud": "watchword",
                "exp": now + 3600,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "sid": uuid.uuid4().hex,
                "scope": "notes:read profile",
                "roles": ["member"],
            },
            private,
            algorithm="EdDSA",
            headers={"kid": "k1", "typ": "at+jwt"},
        )
        for i in range(args.tokens)
    ]
    parts = []
    for token in tokens:
        signing_input, _, signature = token.rpartition(".")
        parts.append((jwt.utils.base64url_decode(signature), signing_input.encode()))

    def verifier(cache_size: int) -> Verifier:
        made = Verifier(
            issuer=ISSUER,
            http_client=httpx.Client(transport=httpx.MockTransport(jwks)),
            revocations=StaticFeed(10_000),
            max_feed_staleness=60,
            cache_size=cache_size,
        )
        made.start()
        made.wait_for_feed(5)
        made.verify(tokens[0])  # fetches the JWKS once
        return made

    cold = verifier(cache_size=0)
    warm = verifier(cache_size=len(tokens) + 1)
    for token in tokens:
        warm.verify(token)

    calls: list[list[Callable[[], object]]] = [
        [
            lambda s=signature, m=message: public.verify(s, m),  # type: ignore[misc]
            lambda t=token: cold.verify(t),  # type: ignore[misc]
            lambda t=token: warm.verify(t),  # type: ignore[misc]
        ]
        for token, (signature, message) in zip(tokens, parts, strict=True)
    ]
    raw_us, cold_us, warm_us = medians_us(calls, args.rounds)
    cold.close()
    warm.close()

    rows = [
        ["cryptography Ed25519 public_key.verify (raw)", raw_us, 1.0],
        ["Verifier.verify, first sight of each token", cold_us, cold_us / raw_us],
        ["Verifier.verify, repeat token (cache + revocation check)", warm_us, warm_us / raw_us],
    ]
    print_table(
        f"EdDSA access tokens, {args.tokens} distinct, {args.rounds} rounds, "
        "10,000 revoked sessions in the list",
        ["what", "median us/call", "ratio to raw"],
        rows,
    )


if __name__ == "__main__":
    main()
