"""The JSON messages on the socket: parse what clients send, build what the server sends.

Every message is one JSON object with a ``type``. Client messages may carry a ``ref`` string
that the server echoes in its reply, so a client can match answers to requests. The full
table is in ``docs/realtime.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PROTOCOL = "watchword.v1"
BEARER_PREFIX = "bearer."

MAX_REF = 64
MAX_CREDENTIAL = 8192
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

USER_PREFIX = "user:"
PRESENCE_PREFIX = "presence:"
CHANNEL_SCOPE_PREFIX = "channel:"
ANY_CHANNEL_SCOPE = "channel:*"


class ProtocolError(ValueError):
    """A client message that is not valid JSON or not a message this protocol knows."""


@dataclass(frozen=True, slots=True)
class Auth:
    token: str | None
    ticket: str | None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str | None
    ticket: str | None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    since: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    ref: str | None = None


ClientMessage = Auth | Refresh | Subscribe | Unsubscribe | Resume | Ping | Pong


def _string(payload: dict[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise ProtocolError(f"'{key}' is required.")
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f"'{key}' must be a non-empty string of at most {limit} characters.")
    return value


def _credential(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    token = _string(payload, "token", MAX_CREDENTIAL, required=False)
    ticket = _string(payload, "ticket", MAX_CREDENTIAL, required=False)
    if (token is None) == (ticket is None):
        raise ProtocolError("Give exactly one of 'token' and 'ticket'.")
    return token, ticket


def parse(text: str) -> ClientMessage:
    """One client message; raises ``ProtocolError`` for anything else."""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("The message is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise ProtocolError("A message is a JSON object.")
    kind = payload.get("type")
    ref = _string(payload, "ref", MAX_REF, required=False)
    if kind == "ping":
        return Ping(ref)
    if kind == "pong":
        return Pong(ref)
    if kind == "subscribe" or kind == "unsubscribe":
        channel = _string(payload, "channel", 200, required=True)
        assert channel is not None
        check_channel(channel)
        return Subscribe(channel, ref) if kind == "subscribe" else Unsubscribe(channel, ref)
    if kind == "auth":
        return Auth(*_credential(payload), ref=ref)
    if kind == "refresh":
        return Refresh(*_credential(payload), ref=ref)
    if kind == "resume":
        since = _string(payload, "since", 100, required=True)
        assert since is not None
        return Resume(since, ref)
    raise ProtocolError(f"Unknown message type {kind!r}." if isinstance(kind, str) else "No type.")


def check_channel(channel: str) -> None:
    """``user:<id>``, ``presence:<id>`` or a plain name; raises ``ProtocolError`` otherwise."""
    for prefix in (USER_PREFIX, PRESENCE_PREFIX):
        if channel.startswith(prefix):
            if not _ID.match(channel[len(prefix) :]):
                raise ProtocolError(f"Bad id in channel {channel[:40]!r}.")
            return
    if not _CHANNEL_NAME.match(channel):
        raise ProtocolError("A channel name is 1-100 letters, digits, '_', '.' or '-'.")


def valid_channel_name(name: str) -> bool:
    """A channel an application publishes to (not a ``user:`` or ``presence:`` channel)."""
    return bool(_CHANNEL_NAME.match(name))


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def valid_event_name(name: str) -> bool:
    return bool(_EVENT_NAME.match(name))


def channel_allowed(channel: str, user_id: str, scopes: frozenset[str]) -> bool:
    """Subscription rules: your own ``user:`` channel always; ``presence:<id>`` for yourself or
    with ``realtime:presence``; a plain channel with scope ``channel:<name>`` or ``channel:*``."""
    if channel.startswith(USER_PREFIX):
        return channel == USER_PREFIX + user_id
    if channel.startswith(PRESENCE_PREFIX):
        return channel == PRESENCE_PREFIX + user_id or "realtime:presence" in scopes
    return CHANNEL_SCOPE_PREFIX + channel in scopes or ANY_CHANNEL_SCOPE in scopes


# -- server messages ---------------------------------------------------------------------------


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def welcome(
    *,
    connection_id: str,
    user_id: str,
    session_id: str | None,
    expires_at: datetime | None,
    channels: list[str],
    ping_interval: float,
    node: str,
) -> str:
    return dumps(
        {
            "type": "welcome",
            "protocol": PROTOCOL,
            "connection_id": connection_id,
            "user_id": user_id,
            "session_id": session_id,
            "expires_at": iso(expires_at) if expires_at else None,
            "channels": channels,
            "ping_interval": ping_interval,
            "node": node,
        }
    )


def event(event_id: str, channel: str, name: str, data: Any, published_at: str) -> str:
    return dumps(
        {
            "type": "event",
            "id": event_id,
            "channel": channel,
            "event": name,
            "data": data,
            "published_at": published_at,
        }
    )


def reply(kind: str, ref: str | None, **fields: Any) -> str:
    message: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        message["ref"] = ref
    return dumps(message)


def error(code: str, message: str, ref: str | None = None) -> str:
    return reply("error", ref, code=code, message=message)


PING = dumps({"type": "ping"})
