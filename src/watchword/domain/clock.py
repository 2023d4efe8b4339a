"""Time and randomness as injectable providers, so tests can move the clock."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol


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


def sha256_hex(secret: str) -> str:
    """How every opaque secret is stored: the SHA-256 of its text, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# The function itself, not a wrapper: the hot paths read it several times per request.
# Modules import the name, so a test can move one module's clock (``monkeypatch.setattr``).
monotonic = time.monotonic


def as_utc(value: datetime) -> datetime:
    """Naive datetimes from storage are UTC; make them aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
