"""``watchword.sdk``: for the services that receive Watchword tokens and the apps that get them.

Verify access tokens locally, with revocations pushed by the server::

    from watchword.sdk import Verifier

    verifier = Verifier(issuer="https://auth.example.com", credential=FEED_KEY)
    token = verifier.verify(bearer)              # or: await verifier.averify(bearer)

Protect routes: ``require`` (FastAPI dependency), ``BearerAuthMiddleware`` (Starlette),
``flask_require`` (Flask). Sign in and call APIs with refreshing tokens: ``WatchwordClient``,
``AsyncWatchwordClient``. See docs/sdk.md.

The SDK never imports the server. Names are loaded on first use, so ``import watchword.sdk``
pulls in neither FastAPI nor Flask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchword.sdk._client import AsyncWatchwordClient, TokenSet, WatchwordAuth, WatchwordClient
    from watchword.sdk._errors import (
        APIError,
        InsufficientScope,
        InvalidRequest,
        InvalidToken,
        KeySetUnavailable,
        LoginRejected,
        RevocationFeedRefused,
        RevocationFeedStale,
        SessionEnded,
        TokenExpired,
        TokenRevoked,
        VerifierUnavailable,
        WatchwordSDKError,
    )
    from watchword.sdk._fastapi import require
    from watchword.sdk._flask import flask_require
    from watchword.sdk._redis import RedisRevocationSource
    from watchword.sdk._revocations import (
        RevocationList,
        RevocationSink,
        RevocationSource,
        SSERevocationSource,
    )
    from watchword.sdk._starlette import BearerAuthMiddleware, token_of
    from watchword.sdk._verifier import VerifiedToken, Verifier
    from watchword.sdk.realtime import (
        PublishRefused,
        RealtimeClient,
        RealtimeClosed,
        RealtimeEvent,
        SubscriptionRefused,
        publish_event,
    )
    from watchword.sdk.signing import HttpSignatureAuth

_EXPORTS: dict[str, str] = {
    "APIError": "watchword.sdk._errors",
    "AsyncWatchwordClient": "watchword.sdk._client",
    "BearerAuthMiddleware": "watchword.sdk._starlette",
    "InsufficientScope": "watchword.sdk._errors",
    "InvalidRequest": "watchword.sdk._errors",
    "InvalidToken": "watchword.sdk._errors",
    "KeySetUnavailable": "watchword.sdk._errors",
    "LoginRejected": "watchword.sdk._errors",
    "RedisRevocationSource": "watchword.sdk._redis",
    "RevocationFeedRefused": "watchword.sdk._errors",
    "RevocationFeedStale": "watchword.sdk._errors",
    "RevocationList": "watchword.sdk._revocations",
    "RevocationSink": "watchword.sdk._revocations",
    "RevocationSource": "watchword.sdk._revocations",
    "SSERevocationSource": "watchword.sdk._revocations",
    "SessionEnded": "watchword.sdk._errors",
    "TokenExpired": "watchword.sdk._errors",
    "TokenRevoked": "watchword.sdk._errors",
    "TokenSet": "watchword.sdk._client",
    "VerifiedToken": "watchword.sdk._verifier",
    "Verifier": "watchword.sdk._verifier",
    "VerifierUnavailable": "watchword.sdk._errors",
    "WatchwordAuth": "watchword.sdk._client",
    "WatchwordClient": "watchword.sdk._client",
    "WatchwordSDKError": "watchword.sdk._errors",
    "flask_require": "watchword.sdk._flask",
    "require": "watchword.sdk._fastapi",
    "token_of": "watchword.sdk._starlette",
}

# -- sdk/signing.py and sdk/realtime.py (other owners) ------------------------------------------
# Their public names go here as "Name": "watchword.sdk.signing" (or ".realtime") entries, and in
# __all__ below; tests/sdk/test_exports.py checks the two stay the same list.
_PEER_EXPORTS: dict[str, str] = {
    "HttpSignatureAuth": "watchword.sdk.signing",
    "RealtimeClient": "watchword.sdk.realtime",
    "RealtimeClosed": "watchword.sdk.realtime",
    "RealtimeEvent": "watchword.sdk.realtime",
    "SubscriptionRefused": "watchword.sdk.realtime",
    "PublishRefused": "watchword.sdk.realtime",
    "publish_event": "watchword.sdk.realtime",
}
# -- end of the peers' spot ---------------------------------------------------------------------

__all__ = [
    "APIError",
    "AsyncWatchwordClient",
    "BearerAuthMiddleware",
    "HttpSignatureAuth",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeySetUnavailable",
    "LoginRejected",
    "PublishRefused",
    "RealtimeClient",
    "RealtimeClosed",
    "RealtimeEvent",
    "RedisRevocationSource",
    "RevocationFeedRefused",
    "RevocationFeedStale",
    "RevocationList",
    "RevocationSink",
    "RevocationSource",
    "SSERevocationSource",
    "SessionEnded",
    "SubscriptionRefused",
    "TokenExpired",
    "TokenRevoked",
    "TokenSet",
    "VerifiedToken",
    "Verifier",
    "VerifierUnavailable",
    "WatchwordAuth",
    "WatchwordClient",
    "WatchwordSDKError",
    "flask_require",
    "publish_event",
    "require",
    "token_of",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name) or _PEER_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'watchword.sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
