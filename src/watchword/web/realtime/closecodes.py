"""Every close code the gateway sends, its reason, and whether the client may reconnect.

Ranges, as Centrifuge splits its own:

* ``4000-4099`` terminal: reconnecting with the same credential or behaviour fails again.
  The client stops (or asks its user to sign in again).
* ``4100-4199`` transient: reconnect with jittered backoff (after fetching a fresh credential
  where the code says so).

The standard codes ``1001`` (going away), ``1011`` (server error), ``1012`` (service restart,
what uvicorn sends on shutdown) and ``1013`` (try again later) are transient as well. A close
frame's reason holds at most 123 bytes: reasons here are short, ``name`` or ``name: detail``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REASON_BYTES = 123


@dataclass(frozen=True, slots=True)
class CloseCode:
    code: int
    name: str
    description: str
    reconnect: bool
    new_credential: bool = False  # reconnect only with a freshly obtained credential

    def reason(self, detail: str | None = None) -> str:
        """The close frame's reason: ``name`` or ``name: detail``, cut to 123 bytes."""
        text = f"{self.name}: {detail}" if detail else self.name
        encoded = text.encode("utf-8")
        if len(encoded) <= MAX_REASON_BYTES:
            return text
        return encoded[:MAX_REASON_BYTES].decode("utf-8", "ignore")


# -- terminal (4000-4099) --------------------------------------------------------------------
BAD_MESSAGE = CloseCode(
    4000, "bad_message", "A message is not valid JSON or not a known message.", False
)
UNAUTHENTICATED = CloseCode(
    4001, "unauthenticated", "No credential before the auth deadline.", False
)
INVALID_CREDENTIAL = CloseCode(
    4002, "invalid_credential", "The credential is malformed, unknown or expired.", False
)
SESSION_REVOKED = CloseCode(
    4003, "session_revoked", "The session was revoked; the reason follows.", False
)
ORIGIN_NOT_ALLOWED = CloseCode(
    4004, "origin_not_allowed", "A cookie came from an Origin not on the allowlist.", False
)
ACCOUNT_DISABLED = CloseCode(4005, "account_disabled", "The account was disabled.", False)
REFRESH_REFUSED = CloseCode(
    4006, "refresh_refused", "A refresh credential belongs to another user or session.", False
)
MESSAGE_TOO_LARGE = CloseCode(
    4007, "message_too_large", "A message exceeded the maximum size.", False
)
CONNECTION_LIMIT = CloseCode(
    4008, "connection_limit", "The user already has the maximum number of connections.", False
)
RATE_LIMITED = CloseCode(
    4009, "rate_limited", "The client sent messages faster than allowed.", False
)
INSUFFICIENT_SCOPE = CloseCode(
    4010,
    "insufficient_scope",
    "The credential lacks the 'realtime' scope or is not a user's.",
    False,
)

# -- transient (4100-4199) -------------------------------------------------------------------
GOING_AWAY = CloseCode(
    4100, "going_away", "The server is shutting down: reconnect, maybe elsewhere.", True
)
CREDENTIAL_EXPIRED = CloseCode(
    4101,
    "credential_expired",
    "No refresh before the deadline: reconnect with a fresh credential.",
    True,
    new_credential=True,
)
NO_PONG = CloseCode(
    4102, "no_pong", "No answer to a ping in time: the connection looked dead.", True
)
SLOW_CONSUMER = CloseCode(
    4103, "slow_consumer", "The send queue overflowed: the client read too slowly.", True
)
UNAVAILABLE = CloseCode(4104, "unavailable", "A backing store is unavailable: retry shortly.", True)

ALL: tuple[CloseCode, ...] = (
    BAD_MESSAGE,
    UNAUTHENTICATED,
    INVALID_CREDENTIAL,
    SESSION_REVOKED,
    ORIGIN_NOT_ALLOWED,
    ACCOUNT_DISABLED,
    REFRESH_REFUSED,
    MESSAGE_TOO_LARGE,
    CONNECTION_LIMIT,
    RATE_LIMITED,
    INSUFFICIENT_SCOPE,
    GOING_AWAY,
    CREDENTIAL_EXPIRED,
    NO_PONG,
    SLOW_CONSUMER,
    UNAVAILABLE,
)
BY_CODE: dict[int, CloseCode] = {close.code: close for close in ALL}

# Never sent: how a connection whose peer vanished (no close frame) is marked.
PEER_GONE = CloseCode(1006, "disconnected", "The peer went away without a close frame.", True)

# Standard codes (RFC 6455 section 7.4.1 and the IANA registry) a client may see.
TRANSIENT_STANDARD = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def may_reconnect(code: int | None) -> bool:
    """Whether a client may reconnect after a close with ``code`` (``None``: no close frame)."""
    if code is None:
        return True
    known = BY_CODE.get(code)
    if known is not None:
        return known.reconnect
    if 4100 <= code <= 4199 or code in TRANSIENT_STANDARD:
        return True
    return False


def needs_new_credential(code: int | None) -> bool:
    known = BY_CODE.get(code) if code is not None else None
    return known is not None and known.new_credential


__all__ = [
    "ALL",
    "BY_CODE",
    "MAX_REASON_BYTES",
    "CloseCode",
    "may_reconnect",
    "needs_new_credential",
]
