"""The SDK's exceptions, one hierarchy::

    WatchwordSDKError
    ├── InvalidToken             401 invalid_token (RFC 6750 section 3.1)
    │   ├── TokenExpired
    │   └── TokenRevoked
    ├── InsufficientScope        403 insufficient_scope
    ├── InvalidRequest           400 invalid_request: a malformed Authorization header
    ├── VerifierUnavailable      503: the verifier cannot vouch for any token right now
    │   ├── KeySetUnavailable    the JWKS could not be fetched and no key is known
    │   ├── RevocationFeedStale  the revocation feed is down for longer than allowed
    │   └── RevocationFeedRefused  the server refused the feed's credential (401/403)
    └── APIError                 the Watchword server answered an error (client side)
        ├── LoginRejected        wrong credentials, disabled account, throttled
        └── SessionEnded         the refresh token is refused: log in again

Every token error carries ``error`` (the RFC 6750 code) and ``description`` (one line, safe to
put in a ``WWW-Authenticate`` header: no token material, no quotes).
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeySetUnavailable",
    "LoginRejected",
    "RevocationFeedRefused",
    "RevocationFeedStale",
    "SessionEnded",
    "TokenExpired",
    "TokenRevoked",
    "VerifierUnavailable",
    "WatchwordSDKError",
]


class WatchwordSDKError(Exception):
    """Base class of every error the SDK raises."""

    error = "server_error"
    status_code = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidToken(WatchwordSDKError):
    """The bearer token is malformed, forged, expired, revoked or not for this service."""

    error = "invalid_token"
    status_code = 401


class TokenExpired(InvalidToken):
    """The token's ``exp`` is past (beyond the leeway)."""


class TokenRevoked(InvalidToken):
    """The token's session (``sid``) or the token itself (``jti``) has been revoked."""


class InsufficientScope(WatchwordSDKError):
    """The token is valid but lacks scopes the resource requires."""

    error = "insufficient_scope"
    status_code = 403

    def __init__(self, missing: frozenset[str]) -> None:
        self.missing = frozenset(missing)
        super().__init__("The token lacks the scope: " + " ".join(sorted(self.missing)))


class InvalidRequest(WatchwordSDKError):
    """The ``Authorization`` header names the Bearer scheme but carries no well-formed token."""

    error = "invalid_request"
    status_code = 400


class VerifierUnavailable(WatchwordSDKError):
    """The verifier cannot decide right now; it fails closed (HTTP 503)."""

    error = "temporarily_unavailable"
    status_code = 503


class KeySetUnavailable(VerifierUnavailable):
    """The issuer's JWKS could not be fetched and no usable key is cached."""


class RevocationFeedStale(VerifierUnavailable):
    """The revocation feed has been down for longer than ``max_feed_staleness``."""


class RevocationFeedRefused(VerifierUnavailable):
    """The server refused the revocation feed (HTTP 401/403): the verifier's credential is
    wrong, revoked, or lacks ``revocations:read``. Nothing is verified until it is fixed."""


class APIError(WatchwordSDKError):
    """The Watchword server answered with an error body ``{"error", "message"}``."""

    def __init__(self, status_code: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.error = error

    def __str__(self) -> str:
        return f"{self.status_code} {self.error}: {self.description}"


class LoginRejected(APIError):
    """The login was refused (bad credentials, disabled account, too many attempts)."""


class SessionEnded(APIError):
    """The refresh token was refused: the session is over and the user must log in again."""
