"""The cluster-facing side of the gateway: fan-out through the bus, revocation, upkeep.

Every event goes out on the bus channel ``REALTIME``, even on one node, and every node
(this one included) delivers it to its own sockets: publishing never depends on where the
recipients are connected. Revocations arrive as control events (from this node, other nodes
or the CLI through the control feed); each node closes its own sockets of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from watchword.bus.base import REALTIME, EventBus
from watchword.domain import events
from watchword.domain.apikeys import CREDENTIAL_REVOKED
from watchword.domain.clock import Clock, Randomness, monotonic
from watchword.domain.errors import StoreUnavailable
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session
from watchword.web.realtime import closecodes, protocol
from watchword.web.realtime.closecodes import CloseCode
from watchword.web.realtime.history import History
from watchword.web.realtime.hub import Hub
from watchword.web.realtime.presence import Presence, PresenceEntry
from watchword.web.realtime.transport.connection import Connection

log = logging.getLogger("watchword.realtime")

PRESENCE_TOUCH_INTERVAL = 30.0
# A sweep pings at most twice its share of the connections (all of them once per ping
# interval), and never fewer than this: sockets that opened together (a deploy, a network
# blip) fall due together, and pinging thousands in one sweep held the event loop for 20 to
# 60 ms (the pings' writes, then their pongs) at 10,000 sockets, measured. A socket past its
# turn is pinged at a later sweep; its pong timeout runs from its own ping. A sweep's pings
# are then spread over the time to the next sweep in ``PING_SLICES`` slices: at 10,000
# sockets one sweep's 800 pings held the loop 12 to 26 ms and their pongs 35 to 45 ms more,
# long enough to be felt by a revocation arriving meanwhile.
MIN_PINGS_PER_SWEEP = 100
PING_SLICES = 10
CONNECT_SCOPE = "realtime"
SIGN_IN_EVENT = "security.sign_in"
REVOKED_EVENT = "security.session_revoked"
PRESENCE_JOINED = "presence.joined"
PRESENCE_LEFT = "presence.left"
# How long a revoked credential is remembered, to refuse a socket whose handshake was under
# way when the revocation arrived (or a ticket made from the credential just before it).
REVOKED_MEMORY = 300.0

UserScopes = Callable[[str], Awaitable[frozenset[str] | None]]


def revoked_binding(message: dict[str, Any]) -> tuple[str, str] | None:
    """The socket binding a control event revokes, with the close reason; None if none."""
    kind = message.get("type")
    if kind == events.TOKEN_REVOKED:
        return f"jti:{message.get('jti')}", "token_revoked"
    if kind != CREDENTIAL_REVOKED:
        return None
    credential = message.get("kind")
    if credential == "api_key":
        return f"api_key:{message.get('key_id')}", "api_key_revoked"
    if credential == "signing_key":
        return f"signing_key:{message.get('credential_id')}", "signing_key_revoked"
    if credential == "client" and message.get("disabled", True):
        return f"client:{message.get('credential_id')}", "client_disabled"
    if credential == "opaque_token":
        return f"opaque_token:{message.get('credential_id')}", "token_revoked"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    max_per_user: int
    max_message_bytes: int
    max_event_bytes: int
    max_subscriptions: int
    send_queue: int
    rate: float
    burst: int
    ping_interval: float
    pong_timeout: float
    auth_timeout: float
    refresh_window: float
    credential_max_age: float
    sweep_interval: float
    close_timeout: float
    touch_interval: float


class RealtimeNode:
    def __init__(
        self,
        *,
        node_id: str,
        bus: EventBus,
        clock: Clock,
        randomness: Randomness,
        presence: Presence,
        limits: Limits,
        history_size: int,
        touch_session: Callable[[str], None] | None = None,
        user_scopes: UserScopes | None = None,
    ) -> None:
        self.node_id = node_id
        self._bus = bus
        self._clock = clock
        self._random = randomness
        self.presence = presence
        self.limits = limits
        self.hub: Hub[Connection] = Hub()
        self.history = History(history_size)
        self._entries: dict[str, PresenceEntry] = {}
        self._touch_session = touch_session
        self._user_scopes = user_scopes
        self._by_credential: dict[str, dict[str, Connection]] = {}
        self._revoked: dict[str, float] = {}  # binding -> monotonic time it is forgotten
        self._task: asyncio.Task[None] | None = None
        self._last_presence_touch = monotonic()
        self.stopping = False
        bus.subscribe(REALTIME, self._on_bus)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, channel: str, event: str, data: Any) -> str:
        """Send ``event`` to ``channel`` (``user:<id>``, ``presence:<id>`` or a name) on
        every node; returns the event id."""
        event_id = self._random.token(9)
        await self._bus.publish(
            REALTIME,
            {
                "id": event_id,
                "channel": channel,
                "event": event,
                "data": data,
                "published_at": protocol.iso(self._clock.now()),
                "origin": self.node_id,
            },
        )
        return event_id

    async def _on_bus(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        event_id = message.get("id")
        if not isinstance(channel, str) or not isinstance(event_id, str):
            log.warning("realtime bus message without channel or id dropped")
            return
        text = protocol.event(
            event_id,
            channel,
            str(message.get("event")),
            message.get("data"),
            str(message.get("published_at")),
        )
        self._deliver(channel, event_id, text)

    def _deliver(self, channel: str, event_id: str, text: str) -> int:
        self.history.append(event_id, channel, text)
        if channel.startswith(protocol.USER_PREFIX):
            targets = self.hub.of_user(channel[len(protocol.USER_PREFIX) :])
        else:
            targets = self.hub.of_channel(channel)
        sent = 0
        for conn in targets:
            if conn.deliver(text):
                sent += 1
        return sent

    def deliver_local(self, user_id: str, event: str, data: Any) -> int:
        """An event for a user's sockets on this node only (each node gets the control
        event that causes it, so publishing it on the bus would repeat it per node)."""
        event_id = self._random.token(9)
        channel = protocol.USER_PREFIX + user_id
        text = protocol.event(event_id, channel, event, data, protocol.iso(self._clock.now()))
        return self._deliver(channel, event_id, text)

    # -- security events --------------------------------------------------------------------

    async def _announce(self, channel: str, event: str, data: dict[str, Any]) -> None:
        """Best effort: a notice the bus cannot carry now (Redis down) is dropped, and said."""
        try:
            await self.publish(channel, event, data)
        except StoreUnavailable:
            log.warning("realtime: bus unavailable, %s not announced", event)

    async def on_session_created(self, session: Session) -> None:
        await self._announce(
            protocol.USER_PREFIX + session.user_id,
            SIGN_IN_EVENT,
            {
                "session_id": session.id,
                "kind": session.kind,
                "device_name": session.device_name,
                "user_agent": session.user_agent,
                "ip": session.ip,
                "created_at": protocol.iso(session.created_at),
            },
        )

    async def on_account_event(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        """A step of the account's life (address verified, password reset...)."""
        await self._announce(protocol.USER_PREFIX + user_id, event, data)

    async def on_control(self, message: dict[str, Any]) -> None:
        """Everything a credential opened ends with it: a revoked session, API key, access
        token, signing key or client, or a disabled or deleted user, closes the sockets it
        opened with 4003; a role change re-checks at once what open sockets may do."""
        kind = message.get("type")
        if kind == events.SESSION_REVOKED:
            session_id = str(message.get("session_id"))
            user_id = str(message.get("user_id"))
            reason = str(message.get("reason") or "revoked")
            doomed = self.hub.of_session(session_id)
            for conn in doomed:
                conn.close(closecodes.SESSION_REVOKED, reason)
            self.deliver_local(user_id, REVOKED_EVENT, {"session_id": session_id, "reason": reason})
        elif kind == events.USER_CHANGED:
            user_id = str(message.get("user_id"))
            if message.get("disabled"):
                self._remember_revoked(f"user:{user_id}")
                reason = "user_deleted" if message.get("deleted") else "user_disabled"
                for conn in self.hub.of_user(user_id):
                    conn.close(closecodes.SESSION_REVOKED, reason)
            else:
                self._revoked.pop(f"user:{user_id}", None)
                await self._recheck_scopes(user_id)
        elif (revoked := revoked_binding(message)) is not None:
            binding, reason = revoked
            self._remember_revoked(binding)
            for conn in list(self._by_credential.get(binding, {}).values()):
                conn.close(closecodes.SESSION_REVOKED, reason)

    def _remember_revoked(self, binding: str) -> None:
        now = monotonic()
        if len(self._revoked) > 10_000:
            self._revoked = {b: t for b, t in self._revoked.items() if t > now}
        self._revoked[binding] = now + REVOKED_MEMORY

    def was_revoked(self, binding: str | None) -> bool:
        if binding is None:
            return False
        until = self._revoked.get(binding)
        return until is not None and until > monotonic()

    async def _recheck_scopes(self, user_id: str) -> None:
        """The owner's roles changed: a socket keeps only what its credential carries within
        what the roles grant now, and leaves the channels it may no longer hear."""
        conns = [c for c in self.hub.of_user(user_id) if not c.closing]
        if not conns or self._user_scopes is None:
            return
        try:
            granted = await self._user_scopes(user_id)
        except StoreUnavailable:
            for conn in conns:  # cannot tell what they may do now: fail closed
                conn.close(closecodes.UNAVAILABLE, "roles changed")
            return
        for conn in conns:
            if granted is None:
                conn.close(closecodes.SESSION_REVOKED, "user_deleted")
                continue
            self.apply_scopes(conn, conn.carried_scopes & granted)

    def apply_scopes(self, conn: Connection, scopes: frozenset[str]) -> None:
        conn.scopes = scopes
        if CONNECT_SCOPE not in scopes:
            conn.close(closecodes.INSUFFICIENT_SCOPE, "scope withdrawn")
            return
        for channel in sorted(conn.channels):
            if not protocol.channel_allowed(channel, conn.user_id, scopes):
                self.hub.unsubscribe(conn, channel)
                conn.deliver(
                    protocol.reply("unsubscribed", None, channel=channel, reason="forbidden")
                )

    def rebind(self, conn: Connection, credential: str | None) -> None:
        """The socket now rests on another credential (an in-socket refresh)."""
        self._unindex(conn)
        conn.credential = credential
        if credential is not None and self.hub.get(conn.id) is conn:
            self._by_credential.setdefault(credential, {})[conn.id] = conn

    def _unindex(self, conn: Connection) -> None:
        if conn.credential is None:
            return
        members = self._by_credential.get(conn.credential)
        if members is not None:
            members.pop(conn.id, None)
            if not members:
                del self._by_credential[conn.credential]

    # -- membership ---------------------------------------------------------------------------

    async def admit(self, conn: Connection, welcome: str) -> CloseCode | None:
        """Add ``conn`` (sending ``welcome`` first), or the close code refusing it."""
        try:
            shared = await self.presence.count(conn.user_id)
        except StoreUnavailable:
            return closecodes.UNAVAILABLE
        if max(shared, self.hub.count_user(conn.user_id)) >= self.limits.max_per_user:
            return closecodes.CONNECTION_LIMIT
        # A revocation that arrived while this socket was being authenticated.
        if self.was_revoked(conn.credential) or self.was_revoked(f"user:{conn.user_id}"):
            return closecodes.SESSION_REVOKED
        # No await between the welcome and joining the hub: the welcome comes first.
        conn.deliver(welcome)
        self.hub.add(conn)
        if conn.credential is not None:
            self._by_credential.setdefault(conn.credential, {})[conn.id] = conn
        entry = PresenceEntry(
            connection_id=conn.id,
            user_id=conn.user_id,
            session_id=conn.session_id,
            device=conn.device,
            node=self.node_id,
            connected_at=protocol.iso(conn.connected_at),
        )
        self._entries[conn.id] = entry
        try:
            await self.presence.add(entry)
        except StoreUnavailable:
            log.warning("presence store unavailable: connection %s not listed", conn.id)
        await self._announce(
            protocol.PRESENCE_PREFIX + conn.user_id, PRESENCE_JOINED, entry.public()
        )
        return None

    async def leave(self, conn: Connection) -> None:
        if not self.hub.remove(conn):
            return
        self._unindex(conn)
        entry = self._entries.pop(conn.id, None)
        if entry is None:
            return
        try:
            await self.presence.remove(entry)
        except StoreUnavailable:
            log.warning("presence store unavailable: connection %s not unlisted", conn.id)
        if not self.stopping:
            await self._announce(
                protocol.PRESENCE_PREFIX + conn.user_id, PRESENCE_LEFT, entry.public()
            )

    def expiry_for(self, principal: Principal) -> datetime | None:
        """When a connection on ``principal`` must have refreshed: the credential's own
        expiry, capped by ``realtime_credential_max_age``."""
        expires_at = principal.expires_at
        if self.limits.credential_max_age > 0:
            cap = self._clock.now() + timedelta(seconds=self.limits.credential_max_age)
            expires_at = cap if expires_at is None else min(expires_at, cap)
        return expires_at

    # -- upkeep -----------------------------------------------------------------------------

    def sweep(self, now_mono: float | None = None) -> list[Connection]:
        """Dead connections, refresh reminders and deadlines, session touches; returns the
        connections due for a ping (at most ``ping_budget()``), for ``ping`` or
        ``ping_spread``."""
        limits = self.limits
        mono = monotonic() if now_mono is None else now_mono
        now = self._clock.now()
        window = timedelta(seconds=limits.refresh_window)
        pings = self.ping_budget()
        due: list[Connection] = []
        for conn in self.hub:
            if conn.closing:
                continue
            if conn.awaiting_pong_since is not None:
                if mono - conn.awaiting_pong_since >= limits.pong_timeout:
                    conn.close(closecodes.NO_PONG)
                    continue
            elif pings > 0 and mono - conn.last_received >= limits.ping_interval:
                pings -= 1
                due.append(conn)
            expires_at = conn.expires_at
            if expires_at is not None:
                if now >= expires_at:
                    conn.close(closecodes.CREDENTIAL_EXPIRED)
                    continue
                if not conn.refresh_sent and now >= expires_at - window:
                    conn.refresh_sent = True
                    conn.deliver(
                        protocol.reply(
                            "refresh_required",
                            None,
                            deadline=protocol.iso(expires_at),
                            expires_in=max(0.0, round((expires_at - now).total_seconds(), 3)),
                        )
                    )
            if (
                conn.session_id is not None
                and self._touch_session is not None
                and mono - conn.last_touch >= limits.touch_interval
            ):
                conn.last_touch = mono
                self._touch_session(conn.session_id)
        return due

    def ping(self, conns: list[Connection], now_mono: float | None = None) -> None:
        """Ping those of ``conns`` still open and silent: a connection heard from since the
        sweep, or already waiting for a pong, is left alone."""
        mono = monotonic() if now_mono is None else now_mono
        interval = self.limits.ping_interval
        for conn in conns:
            if conn.closing or conn.awaiting_pong_since is not None:
                continue
            if mono - conn.last_received >= interval:
                conn.awaiting_pong_since = mono
                conn.deliver(protocol.PING)

    async def ping_spread(
        self,
        conns: list[Connection],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``ping`` over one sweep interval, a slice at a time (``PING_SLICES``); it takes
        the whole interval, pings or not."""
        if not conns:
            await sleep(self.limits.sweep_interval)
            return
        per_slice = math.ceil(len(conns) / PING_SLICES)
        for start in range(0, PING_SLICES * per_slice, per_slice):
            self.ping(conns[start : start + per_slice])
            await sleep(self.limits.sweep_interval / PING_SLICES)

    def ping_budget(self) -> int:
        """How many sockets one sweep may ping (``MIN_PINGS_PER_SWEEP``)."""
        share = len(self.hub) * self.limits.sweep_interval / self.limits.ping_interval
        return max(MIN_PINGS_PER_SWEEP, math.ceil(2 * share))

    async def _sweep_forever(self) -> None:
        due: list[Connection] = []
        while True:
            await self.ping_spread(due)  # the time between sweeps
            due = []
            try:
                due = self.sweep()
                mono = monotonic()
                if mono - self._last_presence_touch >= PRESENCE_TOUCH_INTERVAL:
                    self._last_presence_touch = mono
                    await self.presence.touch(list(self._entries.values()))
            except StoreUnavailable:
                log.warning("realtime upkeep: presence store unavailable")
            except Exception:
                log.exception("realtime upkeep failed")

    async def start(self) -> None:
        self.stopping = False
        self._task = asyncio.create_task(self._sweep_forever(), name="watchword-realtime-sweep")

    async def stop(self) -> None:
        """Tell every client to reconnect elsewhere, then wait (bounded) for the frames."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conns = list(self.hub)
        for conn in conns:
            conn.close(closecodes.GOING_AWAY)
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(conn.wait_closed()) for conn in conns],
                timeout=self.limits.close_timeout,
            )

    def stats(self) -> dict[str, Any]:
        return {"node": self.node_id, **self.hub.stats(), "history": len(self.history)}


__all__ = ["Limits", "RealtimeNode"]
