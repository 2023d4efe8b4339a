"""RFC 6750 for resource servers: reading ``Authorization: Bearer`` and answering refusals.

Shared by the Starlette middleware, the FastAPI dependency and the Flask decorator, so all three
answer the same statuses, bodies and ``WWW-Authenticate`` challenges:

- no bearer token: 401, ``Bearer realm="..."`` with no error code (section 3.1);
- malformed ``Authorization``: 400 ``invalid_request``;
- a bad, expired or revoked token: 401 ``invalid_token`` with an ``error_description``;
- a good token without the scopes: 403 ``insufficient_scope`` with ``scope="..."``;
- the verifier cannot decide (JWKS or revocation feed down): 503, fail closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from watchword.sdk._errors import (
    InsufficientScope,
    InvalidRequest,
    VerifierUnavailable,
    WatchwordSDKError,
)

__all__ = ["Refusal", "bearer_token", "refusal"]

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# A quoted-string of RFC 6750 section 3 may not hold '"' or '\'; keep it printable ASCII.
_UNQUOTABLE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
MAX_AUTHORIZATION = 16_384


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is none (or
    another scheme is used); ``InvalidRequest`` when the Bearer header is malformed."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credentials = credentials.strip()
    if not credentials:
        raise InvalidRequest("The Authorization header has no bearer token.")
    if len(credentials) > MAX_AUTHORIZATION or _B64TOKEN.fullmatch(credentials) is None:
        raise InvalidRequest("The bearer token is not a well-formed b64token.")
    return credentials


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to a request that did not get through."""

    status_code: int
    headers: dict[str, str]
    body: dict[str, str]


def refusal(error: WatchwordSDKError | None, realm: str = "watchword") -> Refusal:
    """The answer for ``error``; ``None`` means no token was presented at all."""
    realm_param = f'realm="{_quotable(realm)}"'
    if error is None:
        return Refusal(
            401,
            {"WWW-Authenticate": f"Bearer {realm_param}"},
            {"error": "unauthorized", "message": "A bearer token is required."},
        )
    description = _quotable(error.description)
    body = {"error": error.error, "message": error.description}
    if isinstance(error, VerifierUnavailable):
        return Refusal(503, {"Retry-After": "5"}, body)
    params = [realm_param, f'error="{error.error}"', f'error_description="{description}"']
    if isinstance(error, InsufficientScope):
        params.append(f'scope="{_quotable(" ".join(sorted(error.missing)))}"')
    return Refusal(error.status_code, {"WWW-Authenticate": "Bearer " + ", ".join(params)}, body)


def _quotable(text: str) -> str:
    return _UNQUOTABLE.sub("?", text)[:300]
