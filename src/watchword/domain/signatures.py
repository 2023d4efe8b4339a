"""RFC 9421 HTTP Message Signatures on requests, with RFC 9530 ``Content-Digest``.

The signature base and the signature check come from ``http-message-signatures``; this module
adds the server's policy: exactly one signature, the components it must cover, a ``created``
time inside the window in both directions, a ``nonce``, the key's own algorithm, and a body
that matches its digest (checked here with ``hashlib``, compared in constant time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import http_sf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)
from http_message_signatures.algorithms import ED25519, HMAC_SHA256, HTTPSignatureAlgorithm

from watchword.domain.clock import Randomness
from watchword.domain.errors import InvalidCredential, InvalidInput

T = TypeVar("T")

KEY_ID_PREFIX = "wsk_"
HMAC_SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
REQUIRED_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri", "content-digest")
_KEY_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NONCE_SHAPE = re.compile(r"^[\x21-\x7e]{8,128}$")
_DIGESTS: dict[str, Callable[[bytes], Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}


class SignatureAlgorithm(StrEnum):
    HMAC_SHA256 = "hmac-sha256"
    ED25519 = "ed25519"


_ALGORITHMS: dict[SignatureAlgorithm, type[HTTPSignatureAlgorithm]] = {
    SignatureAlgorithm.HMAC_SHA256: HMAC_SHA256,
    SignatureAlgorithm.ED25519: ED25519,
}

VerificationKey = bytes | Ed25519PublicKey


class SignatureRejected(InvalidCredential):
    """The request's HTTP message signature is missing parts, stale, replayed or wrong."""

    code = "invalid_signature"
    default_message = "The request signature is not valid."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A registered key: an HMAC secret sealed under the master key, or an Ed25519 public key
    (raw 32 bytes, base64url). ``id`` is the RFC 9421 ``keyid``."""

    id: str
    user_id: str
    name: str
    algorithm: SignatureAlgorithm
    material: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def public(self, last_used_at: datetime | None = None) -> dict[str, Any]:
        used = last_used_at or self.last_used_at
        body: dict[str, Any] = {
            "id": self.id,
            "key_id": self.id,
            "name": self.name,
            "algorithm": self.algorithm.value,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "last_used_at": used.isoformat() if used else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }
        if self.algorithm is SignatureAlgorithm.ED25519:
            body["public_key"] = self.material
        return body


@dataclass(frozen=True, slots=True)
class SignatureInput:
    """The parameters of the one signature a request carries (RFC 9421 section 4.1)."""

    label: str
    components: tuple[str, ...]
    key_id: str
    created: int | None
    expires: int | None
    nonce: str | None
    alg: str | None


def new_key_id(randomness: Randomness) -> str:
    return KEY_ID_PREFIX + randomness.new_id().replace("-", "")[:24]


def new_hmac_secret(randomness: Randomness) -> str:
    """A 256-bit HMAC secret, base64url without padding (how the SDK takes it)."""
    return randomness.token(HMAC_SECRET_BYTES)


def hmac_secret_bytes(secret: str) -> bytes:
    """The key bytes of a base64url secret as ``new_hmac_secret`` makes them."""
    try:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("The HMAC secret is not base64url.") from exc
    if len(raw) < 16:
        raise InvalidInput("The HMAC secret is too short.")
    return raw


def parse_ed25519_public_key(value: str) -> str:
    """Accept a PEM SubjectPublicKeyInfo or raw 32 bytes in base64/base64url; return the
    canonical base64url form that is stored."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidInput("The public key is not an Ed25519 key.")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = base64.urlsafe_b64decode(
                text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4)
            )
            Ed25519PublicKey.from_public_bytes(raw)
    except InvalidInput:
        raise
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidInput("The public key is not a valid Ed25519 key.") from exc
    if len(raw) != 32:
        raise InvalidInput("An Ed25519 public key is 32 bytes.")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ed25519_public_key(stored: str) -> Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def read_signature_input(headers: Iterable[tuple[str, str]]) -> SignatureInput:
    """Parse ``Signature-Input``; exactly one signature is accepted."""
    values = [v for name, v in headers if name.lower() == "signature-input"]
    if not values:
        raise SignatureRejected("Missing Signature-Input header.")
    try:
        parsed: Any = http_sf.parse(", ".join(values).encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise SignatureRejected("Malformed Signature-Input header.") from exc
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise SignatureRejected("Exactly one signature is expected.")
    label, (member, params) = next(iter(parsed.items()))
    if not isinstance(member, list):
        raise SignatureRejected("Signature-Input must be an inner list of components.")
    components = []
    for item, _item_params in member:
        if not isinstance(item, str):
            raise SignatureRejected("Component names must be strings.")
        components.append(item)
    key_id = params.get("keyid")
    if not isinstance(key_id, str) or not _KEY_ID_SHAPE.match(key_id):
        raise SignatureRejected("The signature has no usable keyid parameter.")
    return SignatureInput(
        label=str(label),
        components=tuple(components),
        key_id=key_id,
        created=_param(params, "created", int),
        expires=_param(params, "expires", int),
        nonce=_param(params, "nonce", str),
        alg=_param(params, "alg", str),
    )


def _param(params: dict[str, Any], name: str, kind: type[T]) -> T | None:
    value = params.get(name)
    if value is None:
        return None
    if type(value) is not kind:
        raise SignatureRejected(f"The {name} parameter has the wrong type.")
    return value


@dataclass(frozen=True, slots=True)
class SignaturePolicy:
    window_seconds: int = 300
    required_components: tuple[str, ...] = REQUIRED_COMPONENTS
    require_nonce: bool = True
    require_created: bool = True

    def check_params(self, sig: SignatureInput, now: datetime) -> None:
        """Covered components, the time window (both directions) and the nonce's shape."""
        missing = [c for c in self.required_components if c not in sig.components]
        if missing:
            raise SignatureRejected("The signature does not cover: " + ", ".join(missing) + ".")
        at = now.timestamp()
        if sig.created is None:
            if self.require_created:
                raise SignatureRejected("The signature has no created parameter.")
        elif sig.created < at - self.window_seconds:
            raise SignatureRejected("The signature is too old (created outside the window).")
        elif sig.created > at + self.window_seconds:
            raise SignatureRejected(
                "The signature is from the future (created outside the window)."
            )
        if sig.expires is not None and sig.expires < at:
            raise SignatureRejected("The signature has expired.")
        if self.require_nonce and (sig.nonce is None or not _NONCE_SHAPE.match(sig.nonce)):
            raise SignatureRejected("The signature needs a nonce of 8 to 128 characters.")


class _Fields:
    """Header lines as the library reads them (``items()`` keeps repeated lines)."""

    def __init__(self, lines: Sequence[tuple[str, str]]) -> None:
        self._lines = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return self._lines

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._lines)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    headers: _Fields


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: VerificationKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        return self._key if key_id == self._key_id else None


class _WindowCheckedVerifier(HTTPMessageVerifier):
    # The time window is checked by ``SignaturePolicy`` with the injected clock.
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


def verify_content_digest(headers: Iterable[tuple[str, str]], body: bytes) -> None:
    """RFC 9530: every digest in ``Content-Digest`` must match the body."""
    values = [v for name, v in headers if name.lower() == "content-digest"]
    if not values:
        raise SignatureRejected("Missing Content-Digest header.")
    try:
        parsed: Any = http_sf.parse(", ".join(values).encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise SignatureRejected("Malformed Content-Digest header.") from exc
    if not isinstance(parsed, dict) or not parsed:
        raise SignatureRejected("Malformed Content-Digest header.")
    checked = 0
    for algorithm, (value, _params) in parsed.items():
        hasher = _DIGESTS.get(algorithm)
        if hasher is None:
            continue
        if not isinstance(value, bytes):
            raise SignatureRejected("Malformed Content-Digest header.")
        if not hmac.compare_digest(value, hasher(body).digest()):
            raise SignatureRejected("The body does not match its Content-Digest.")
        checked += 1
    if not checked:
        raise SignatureRejected("Content-Digest has no sha-256 or sha-512 digest.")


def verify_signature(
    *,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    sig: SignatureInput,
    algorithm: SignatureAlgorithm,
    key: VerificationKey,
) -> None:
    """Check the signature over the signature base (and the body against its digest when the
    signature covers ``content-digest``). Policy checks come first, in ``SignaturePolicy``."""
    if sig.alg is not None and sig.alg != algorithm.value:
        raise SignatureRejected("The signature's alg does not match the key.")
    verifier = _WindowCheckedVerifier(
        signature_algorithm=_ALGORITHMS[algorithm], key_resolver=_OneKey(sig.key_id, key)
    )
    message = _Request(method=method.upper(), url=url, headers=_Fields(headers))
    try:
        verifier.verify(message, max_age=None)
    except HTTPMessageSignaturesException as exc:
        raise SignatureRejected("The signature does not verify.") from exc
    if "content-digest" in sig.components and body is not None:
        verify_content_digest(headers, body)
