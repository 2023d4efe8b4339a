"""A fake Watchword issuer for SDK tests: real keys, a JWKS on MockTransport, token minting."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://auth.test"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"


class Clock:
    """A clock tests move by hand (epoch seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_key(algorithm: str) -> Any:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIssuer:
    """Signing keys by kid, the JWKS they make, and a MockTransport serving it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.keys: dict[str, tuple[str, Any]] = {}
        self.published: set[str] = set()
        self.jwks_requests = 0
        self.jwks_status = 200
        self.jwks_extra: list[dict[str, Any]] = []
        self.cache_control: str | None = "public, max-age=300"
        self.routes: dict[str, Callable[[httpx.Request], Any]] = {}
        self.transport = httpx.MockTransport(self._handle)

    def add_key(self, kid: str, algorithm: str = "EdDSA", *, publish: bool = True) -> None:
        self.keys[kid] = (algorithm, new_key(algorithm))
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid in sorted(self.published):
            algorithm, private = self.keys[kid]
            jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(private.public_key()))
            entries.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})
        return {"keys": entries + self.jwks_extra}

    def _handle(self, request: httpx.Request) -> Any:
        if request.url.path == "/.well-known/jwks.json":
            self.jwks_requests += 1
            if self.jwks_status != 200:
                return httpx.Response(self.jwks_status, json={"error": "down"})
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            return httpx.Response(200, json=self.jwks(), headers=headers)
        route = self.routes.get(request.url.path)
        if route is not None:
            return route(request)
        return httpx.Response(404, json={"error": "not_found", "message": "no route"})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": "watchword",
            "exp": now + 600,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "sid": "session-1",
            "scope": "notes:read profile",
            "roles": ["member"],
        }
        for name, value in overrides.items():
            if value is ...:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(
        self, kid: str = "k1", *, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        algorithm, private = self.keys[kid]
        header = {"typ": "at+jwt", "kid": kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), private, algorithm=algorithm, headers=header)


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A hand-made compact JWS, for tokens no honest library would produce."""
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(payload).encode())
    return f"{h}.{p}.{b64(signature)}"
