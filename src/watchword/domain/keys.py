"""Signing keys for access tokens: generation, their life cycle, their public JWK (RFC 7517).

A key signs while it is the newest one (the highest ``generation``). Rotation adds a newer key
and retires the others; a retired key still verifies until every token it can have signed has
expired (``retired_at`` + the longest token lifetime + the clock-skew leeway), and only then
leaves the JWKS. Private halves leave this module only as PKCS#8 PEM, to be sealed with the
master key by the caller; the store never sees them in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

Algorithm = Literal["EdDSA", "ES256", "RS256"]
ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "ES256", "RS256")
RSA_KEY_BITS = 2048

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A signing key as the store keeps it: the private half sealed, the public half clear."""

    kid: str
    algorithm: str
    generation: int
    private_sealed: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None

    def verify_until(self, max_token_lifetime: timedelta) -> datetime | None:
        """After this no token the key signed can be valid; None while it still signs."""
        if self.retired_at is None:
            return None
        return self.retired_at + max_token_lifetime

    def publishable(self, now: datetime, max_token_lifetime: timedelta) -> bool:
        until = self.verify_until(max_token_lifetime)
        return until is None or now < until


def generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_pem(pem: bytes, algorithm: str) -> PrivateKey:
    """The private key, checked to be of the kind ``algorithm`` needs."""
    key = serialization.load_pem_private_key(pem, password=None)
    expected: type[Any] = {
        "EdDSA": ed25519.Ed25519PrivateKey,
        "ES256": ec.EllipticCurvePrivateKey,
        "RS256": rsa.RSAPrivateKey,
    }.get(algorithm, type(None))
    if not isinstance(key, expected):
        raise ValueError(f"stored key does not match its algorithm {algorithm!r}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("an ES256 key must be on P-256")
    return cast(PrivateKey, key)


def public_jwk(key: PublicKey, *, kid: str, algorithm: str) -> dict[str, Any]:
    """The public half as a JWK with ``kid``, ``alg`` and ``use: sig``."""
    jwk: dict[str, Any]
    if isinstance(key, ed25519.Ed25519PublicKey):
        jwk = dict(OKPAlgorithm.to_jwk(key, as_dict=True))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = dict(ECAlgorithm.to_jwk(key, as_dict=True))
    else:
        jwk = dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    # Only public members leave: whatever the library adds, private parameters never do.
    public_members = {"kty", "crv", "x", "y", "n", "e"}
    jwk = {k: v for k, v in jwk.items() if k in public_members}
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return jwk


def new_key(
    algorithm: str,
    *,
    kid: str,
    generation: int,
    now: datetime,
    seal: Callable[[bytes], str],
) -> tuple[StoredKey, PrivateKey]:
    """A fresh key pair: the row to store (private half sealed by ``seal``) and the key."""
    private = generate_private_key(algorithm)
    stored = StoredKey(
        kid=kid,
        algorithm=algorithm,
        generation=generation,
        private_sealed=seal(private_pem(private)),
        public_jwk=public_jwk(private.public_key(), kid=kid, algorithm=algorithm),
        created_at=now,
    )
    return stored, private
