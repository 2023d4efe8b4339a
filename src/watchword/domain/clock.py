"""Time and randomness as injectable providers, so tests can move the clock."""

from __future__ import annotations

import hashlib
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

try:  # CPython's own SHA-256 (for short secrets, see SHORT_SECRET below)
    if sys.version_info >= (3, 12):
        from _sha2 import sha256 as _cpython_sha256
    else:
        from _sha256 import sha256 as _cpython_sha256  # type: ignore[import-not-found]
except ImportError:  # a Python built without it: OpenSSL's, the same digest
    _cpython_sha256 = hashlib.sha256


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def timestamp(self) -> float:
        """``now()`` as POSIX seconds, without making a datetime (hot paths)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()


class Randomness(Protocol):
    def token(self, nbytes: int = 32) -> str:
        """A URL-safe random secret of ``nbytes`` bytes of entropy."""
        ...

    def new_id(self) -> str:
        """A random unique identifier (uuid4 text)."""
        ...


class SystemRandomness:
    def token(self, nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)

    def new_id(self) -> str:
        return str(uuid.uuid4())


# SHA-256 pads a message of up to 119 bytes into two 64-byte blocks: every secret Watchword
# makes (a cookie secret, an API key, a refresh token) fits. Up to that, CPython's own SHA-256
# hashes it, beyond it OpenSSL's; both compute the same standard digest. In the server under
# load, OpenSSL's per-call setup (the context, the digest's lookup) cost more than CPython's
# whole hash of a short secret, more than a microbenchmark of either shows (A/B, CPU per
# request: 1 us on a cookie, 1.5 to 3 us on an API key); for a bearer token (hundreds of
# bytes) OpenSSL's use of the CPU's SHA instructions wins.
SHORT_SECRET = 119


def _sha256(data: bytes) -> hashlib._Hash:
    if len(data) <= SHORT_SECRET:
        return _cpython_sha256(data)  # type: ignore[no-any-return]
    return hashlib.sha256(data)


def sha256_digest(data: bytes) -> bytes:
    return _sha256(data).digest()


def sha256_hex(secret: str) -> str:
    """How every opaque secret is stored: the SHA-256 of its text, in hex."""
    return _sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# The function itself, not a wrapper: the hot paths read it several times per request.
# Modules import the name, so a test can move one module's clock (``monkeypatch.setattr``).
monotonic = time.monotonic


def as_utc(value: datetime) -> datetime:
    """Naive datetimes from storage are UTC; make them aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
