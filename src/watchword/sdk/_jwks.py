"""The issuer's signing keys: a JWKS fetched over HTTP, cached, refetched with restraint.

A token whose ``kid`` is unknown triggers one refetch (a key was just rotated in), but misses
are rate-limited: at most one miss-driven fetch per ``min_refetch_interval`` (30 s by default),
so a storm of tokens with invented ``kid`` values costs the issuer one request, not thousands.
The set is also refreshed when its ``Cache-Control: max-age`` runs out, by the one caller that
notices first while the others keep verifying with the keys they have.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from watchword.sdk._errors import InvalidToken, KeySetUnavailable

__all__ = ["KeySet", "SigningKey"]

logger = logging.getLogger("watchword.sdk")

MAX_JWKS_BYTES = 256 * 1024
MIN_MAX_AGE = 30.0
MAX_MAX_AGE = 86_400.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,9})\"?\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One public key of the issuer, ready for PyJWT."""

    kid: str
    algorithm: str
    key: Any


class KeySet:
    """The cached JWKS of one issuer. Thread-safe for the sync path, one lock per side."""

    def __init__(
        self,
        url: str,
        *,
        algorithms: frozenset[str],
        clock: Callable[[], float],
        sync_http: Callable[[], httpx.Client],
        async_http: Callable[[], httpx.AsyncClient],
        min_refetch_interval: float = 30.0,
        default_max_age: float = 300.0,
        on_keys_removed: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self._algorithms = algorithms
        self._clock = clock
        self._sync_http = sync_http
        self._async_http = async_http
        self._min_refetch_interval = min_refetch_interval
        self._default_max_age = default_max_age
        self._on_keys_removed = on_keys_removed
        self.keys: dict[str, SigningKey] = {}
        self.fetched_at: float | None = None
        self.fetch_count = 0
        self._expires_at = 0.0
        self._next_miss_fetch_at = 0.0
        self._failures = 0
        self._last_error: str | None = None
        self._thread_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    # -- lookups ------------------------------------------------------------------------------

    def resolve(self, kid: str) -> SigningKey:
        """The key for ``kid``, fetching the set when needed (blocking I/O)."""
        key = self.keys.get(kid)
        now = self._clock()
        if key is not None:
            if now >= self._expires_at and self._thread_lock.acquire(blocking=False):
                try:
                    self._refresh_expired(self._fetch_sync, now)
                finally:
                    self._thread_lock.release()
                return self._known(kid)
            return key
        with self._thread_lock:
            if kid not in self.keys and self._may_fetch_for_miss(self._clock()):
                self._fetch_sync()
            return self._known(kid)

    async def aresolve(self, kid: str) -> SigningKey:
        """The key for ``kid``; the fetch, when one is needed, does not block the loop."""
        key = self.keys.get(kid)
        now = self._clock()
        lock = self._lock()
        if key is not None:
            if now >= self._expires_at and not lock.locked():
                async with lock:
                    if self._clock() >= self._expires_at:
                        await self._refresh_expired_async(now)
                return self._known(kid)
            return key
        async with lock:
            if kid not in self.keys and self._may_fetch_for_miss(self._clock()):
                await self._fetch_async()
            return self._known(kid)

    def _known(self, kid: str) -> SigningKey:
        key = self.keys.get(kid)
        if key is not None:
            return key
        if self.fetched_at is None:
            raise KeySetUnavailable(
                f"The issuer's signing keys could not be fetched: {self._last_error}."
            )
        raise InvalidToken("The token's key id is not one of the issuer's signing keys.")

    def _may_fetch_for_miss(self, now: float) -> bool:
        return now >= self._next_miss_fetch_at

    def _lock(self) -> asyncio.Lock:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock

    # -- fetching -----------------------------------------------------------------------------

    def _refresh_expired(self, fetch: Callable[[], None], now: float) -> None:
        try:
            fetch()
        except KeySetUnavailable as exc:
            # The keys we hold stay good until the issuer says otherwise; retry later.
            logger.warning("JWKS refresh failed, keeping the cached keys: %s", exc.description)
            self._expires_at = now + self._min_refetch_interval

    async def _refresh_expired_async(self, now: float) -> None:
        try:
            await self._fetch_async()
        except KeySetUnavailable as exc:
            logger.warning("JWKS refresh failed, keeping the cached keys: %s", exc.description)
            self._expires_at = now + self._min_refetch_interval

    def _fetch_sync(self) -> None:
        try:
            response = self._sync_http().get(self.url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__} while fetching {self.url}")
            raise KeySetUnavailable(f"The JWKS is unreachable: {self._last_error}.") from exc
        self._apply(response)

    async def _fetch_async(self) -> None:
        try:
            response = await self._async_http().get(
                self.url, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__} while fetching {self.url}")
            raise KeySetUnavailable(f"The JWKS is unreachable: {self._last_error}.") from exc
        self._apply(response)

    def _failed(self, reason: str) -> None:
        now = self._clock()
        self._failures += 1
        self._last_error = reason
        backoff = min(self._min_refetch_interval, 0.5 * 2 ** min(self._failures, 10))
        self._next_miss_fetch_at = now + backoff

    def _apply(self, response: httpx.Response) -> None:
        self.fetch_count += 1
        try:
            keys, max_age = self._parse(response)
        except ValueError as exc:
            self._failed(str(exc))
            raise KeySetUnavailable(f"The issuer's JWKS is unusable: {exc}.") from exc
        now = self._clock()
        removed = bool(self.keys.keys() - keys.keys())
        self.keys = keys
        self.fetched_at = now
        self._failures = 0
        self._last_error = None
        self._expires_at = now + max_age
        self._next_miss_fetch_at = now + self._min_refetch_interval
        if removed and self._on_keys_removed is not None:
            self._on_keys_removed()

    def _parse(self, response: httpx.Response) -> tuple[dict[str, SigningKey], float]:
        if response.status_code != 200:
            raise ValueError(f"{self.url} answered HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError(f"{self.url} answered more than {MAX_JWKS_BYTES} bytes")
        try:
            document = response.json()
        except ValueError as exc:
            raise ValueError(f"{self.url} did not answer JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{self.url} has no 'keys' list")
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            key = self._key_of(entry)
            if key is not None and key.kid not in keys:
                keys[key.kid] = key
        return keys, self._max_age(response.headers.get("cache-control"))

    def _key_of(self, entry: object) -> SigningKey | None:
        """A usable public signing key, or None (skipped, never fatal for the others)."""
        if not isinstance(entry, dict):
            return None
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            return None
        if entry.get("use", "sig") != "sig" or "d" in entry or entry.get("kty") == "oct":
            # Encryption keys, private key material and shared secrets are never accepted.
            return None
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            logger.warning("Skipping an unusable JWKS entry (kid=%r).", kid[:64])
            return None
        if parsed.algorithm_name not in self._algorithms:
            return None
        return SigningKey(kid=kid, algorithm=parsed.algorithm_name, key=parsed.key)

    def _max_age(self, cache_control: str | None) -> float:
        if cache_control:
            match = _MAX_AGE.search(cache_control)
            if match is not None:
                return min(MAX_MAX_AGE, max(MIN_MAX_AGE, float(match.group(1))))
        return self._default_max_age
