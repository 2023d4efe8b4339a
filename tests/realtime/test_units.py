"""The gateway's parts without a network: close codes, messages, hub, queue, tickets, node."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest

from tests.helpers import ManualClock
from watchword.bus.local import LocalBus
from watchword.domain import events
from watchword.domain.clock import SystemRandomness
from watchword.domain.errors import RateLimited, StoreUnavailable
from watchword.domain.principal import AuthMethod, Principal
from watchword.domain.sessions import Session
from watchword.web.realtime import closecodes, protocol
from watchword.web.realtime.client import Gateway, _Abort
from watchword.web.realtime.history import History
from watchword.web.realtime.hub import Hub
from watchword.web.realtime.node import Limits, RealtimeNode
from watchword.web.realtime.presence import MemoryPresence
from watchword.web.realtime.tickets import MemoryTicketStore, Tickets, looks_like_ticket
from watchword.web.realtime.transport.connection import Connection

# -- close codes ---------------------------------------------------------------------------


def test_close_codes_are_unique_in_range_and_split_by_reconnect() -> None:
    codes = [c.code for c in closecodes.ALL]
    assert len(codes) == len(set(codes))
    for close in closecodes.ALL:
        assert 4000 <= close.code <= 4199
        assert close.reconnect == (close.code >= 4100), close
        assert len(close.reason().encode()) <= closecodes.MAX_REASON_BYTES
    assert closecodes.SESSION_REVOKED.code == 4003  # fixed by the issue
    assert not closecodes.may_reconnect(4003)


def test_reason_is_cut_to_the_frame_limit_on_a_character_boundary() -> None:
    reason = closecodes.SESSION_REVOKED.reason("é" * 200)
    assert len(reason.encode()) <= 123
    assert reason.startswith("session_revoked: é")
    assert closecodes.SESSION_REVOKED.reason("logout") == "session_revoked: logout"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, True),
        (1000, False),
        (1001, True),
        (1006, True),
        (1008, False),
        (1012, True),
        (4003, False),
        (4050, False),
        (4101, True),
        (4150, True),
        (4500, False),
    ],
)
def test_may_reconnect(code: int | None, expected: bool) -> None:
    assert closecodes.may_reconnect(code) is expected


def test_only_expiry_asks_for_a_new_credential() -> None:
    assert closecodes.needs_new_credential(4101)
    assert not closecodes.needs_new_credential(4102)
    assert not closecodes.needs_new_credential(None)


# -- protocol ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "ping"}', protocol.Ping()),
        ('{"type": "pong", "ref": "a"}', protocol.Pong("a")),
        ('{"type": "subscribe", "channel": "news"}', protocol.Subscribe("news")),
        ('{"type": "unsubscribe", "channel": "user:u1"}', protocol.Unsubscribe("user:u1")),
        ('{"type": "auth", "ticket": "wwt_x"}', protocol.Auth(None, "wwt_x")),
        ('{"type": "refresh", "token": "t", "ref": "1"}', protocol.Refresh("t", None, "1")),
        ('{"type": "resume", "since": "abc"}', protocol.Resume("abc")),
    ],
)
def test_parse_accepts_each_message(text: str, expected: protocol.ClientMessage) -> None:
    assert protocol.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"ping"',
        "{}",
        '{"type": 1}',
        '{"type": "shout"}',
        '{"type": "subscribe"}',
        '{"type": "subscribe", "channel": ""}',
        '{"type": "subscribe", "channel": "has space"}',
        '{"type": "subscribe", "channel": "user:"}',
        '{"type": "subscribe", "channel": "presence:a b"}',
        '{"type": "subscribe", "channel": 5}',
        '{"type": "auth"}',
        '{"type": "auth", "token": "a", "ticket": "b"}',
        '{"type": "auth", "token": ""}',
        '{"type": "refresh", "token": 42}',
        '{"type": "resume"}',
        '{"type": "ping", "ref": ' + json.dumps("r" * 65) + "}",
        "[" * 100_000,
    ],
)
def test_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(text)


def test_channel_rules() -> None:
    scopes = frozenset({"realtime", "channel:news"})
    assert protocol.channel_allowed("user:u1", "u1", scopes)
    assert not protocol.channel_allowed("user:u2", "u1", scopes)
    assert protocol.channel_allowed("news", "u1", scopes)
    assert not protocol.channel_allowed("sports", "u1", scopes)
    assert protocol.channel_allowed("sports", "u1", frozenset({"channel:*"}))
    assert protocol.channel_allowed("presence:u1", "u1", scopes)
    assert not protocol.channel_allowed("presence:u2", "u1", scopes)
    assert protocol.channel_allowed("presence:u2", "u1", frozenset({"realtime:presence"}))


# -- hub and history -----------------------------------------------------------------------


class Member:
    def __init__(self, id: str, user_id: str, session_id: str | None) -> None:
        self.id = id
        self.user_id = user_id
        self.session_id = session_id
        self.channels: set[str] = set()


def test_hub_indexes_and_forgets_everything() -> None:
    hub: Hub[Member] = Hub()
    a, b, c = Member("a", "u1", "s1"), Member("b", "u1", "s2"), Member("c", "u2", None)
    for m in (a, b, c):
        hub.add(m)
    with pytest.raises(ValueError):
        hub.add(a)
    assert hub.subscribe(a, "news") and not hub.subscribe(a, "news")
    hub.subscribe(c, "news")
    assert [m.id for m in hub.of_user("u1")] == ["a", "b"]
    assert [m.id for m in hub.of_session("s2")] == ["b"]
    assert [m.id for m in hub.of_channel("news")] == ["a", "c"]
    assert hub.count_user("u1") == 2
    assert hub.remove(a) and not hub.remove(a)
    assert [m.id for m in hub.of_channel("news")] == ["c"]
    assert hub.unsubscribe(c, "news") and not hub.unsubscribe(c, "news")
    hub.remove(b)
    hub.remove(c)
    assert hub.stats() == {"connections": 0, "users": 0, "sessions": 0, "channels": 0}


def test_history_replays_after_an_id_on_the_given_channels_only() -> None:
    history = History(3)
    for n, channel in enumerate(["user:u1", "news", "user:u2", "user:u1"]):
        history.append(f"e{n}", channel, f"text{n}")
    assert history.after("e1", {"user:u1"}) == (True, ["text3"])
    assert history.after("e1", {"user:u1", "user:u2", "news"}) == (True, ["text2", "text3"])
    assert history.after("e0", {"user:u1"}) == (False, [])  # fell out of the window
    assert history.after("nope", {"news"}) == (False, [])
    assert len(history) == 3
    assert History(0).after("x", set()) == (False, [])


# -- connection ----------------------------------------------------------------------------


class FakeSocket:
    """A transport whose sends can be held back, like a peer that stopped reading."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closes: list[tuple[int, str | None]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.close_blocks = False

    async def send_text(self, data: str) -> None:
        await self.open.wait()
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.close_blocks:
            await self.open.wait()
        self.closes.append((code, reason))


def make_connection(socket: FakeSocket, clock: ManualClock, **overrides: Any) -> Connection:
    values: dict[str, Any] = {
        "id": "c1",
        "transport": socket,
        "user_id": "u1",
        "session_id": "s1",
        "scopes": frozenset({"realtime"}),
        "method": "cookie",
        "expires_at": None,
        "device": "test",
        "ip": None,
        "connected_at": clock.now(),
        "queue_limit": 4,
        "rate": 10.0,
        "burst": 3,
        "close_timeout": 5.0,
    }
    values.update(overrides)
    return Connection(**values)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_messages_go_out_in_order(clock: ManualClock) -> None:
    socket = FakeSocket()
    conn = make_connection(socket, clock)
    for n in range(3):
        assert conn.deliver(str(n))
    await settle()
    assert socket.sent == ["0", "1", "2"]
    assert conn.queued == 0


async def test_a_slow_consumer_is_cut_off_and_its_queue_never_grows_past_the_bound(
    clock: ManualClock,
) -> None:
    socket = FakeSocket()
    socket.open.clear()  # the peer stopped reading: the first send blocks
    conn = make_connection(socket, clock)
    accepted = [conn.deliver(f"m{n}") for n in range(1000)]
    assert conn.queued <= conn.queue_limit
    assert accepted.count(True) == conn.queue_limit
    assert conn.close_code is closecodes.SLOW_CONSUMER
    assert conn.queued == 0  # dropped at once, not when the peer wakes up
    socket.open.set()
    await settle()
    assert socket.closes == [(4103, "slow_consumer: more than 4 queued")]
    assert socket.sent == []


async def test_close_drops_the_queue_and_happens_once(clock: ManualClock) -> None:
    socket = FakeSocket()
    conn = make_connection(socket, clock)
    conn.close(closecodes.SESSION_REVOKED, "logout")
    conn.close(closecodes.GOING_AWAY)
    assert not conn.deliver("late")
    await conn.wait_closed()
    assert socket.closes == [(4003, "session_revoked: logout")]
    assert socket.sent == []


async def test_a_close_that_cannot_be_written_aborts_the_socket(clock: ManualClock) -> None:
    socket = FakeSocket()
    socket.open.clear()
    socket.close_blocks = True
    aborted = []
    conn = make_connection(socket, clock, close_timeout=0.01, abort=lambda: aborted.append(1))
    conn.close(closecodes.NO_PONG)
    await conn.wait_closed()
    assert aborted == [1]


class SilentSocket(FakeSocket):
    """A peer that never sends anything: the handler waits in ``receive`` for ever."""

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def make_gateway(node: RealtimeNode, clock: ManualClock) -> Gateway:
    unused: Any = None  # the message loop needs neither credentials nor a handshake chain
    return Gateway(
        node=node,
        credentials=unused,
        handshake=unused,
        clock=clock,
        randomness=SystemRandomness(),
    )


async def test_an_aborted_socket_handler_ends_quietly_and_leaves_the_node(
    clock: ManualClock,
) -> None:
    node, _, _ = make_node(clock)
    socket = SilentSocket()
    abort = _Abort(None)
    conn = make_connection(socket, clock, abort=abort)
    assert await node.admit(conn, "welcome") is None
    handler = asyncio.create_task(make_gateway(node, clock)._run(socket, conn))  # type: ignore[arg-type]
    abort.handler = handler
    await settle()
    abort()
    await asyncio.wait_for(handler, 5)  # no CancelledError: the abort was expected
    assert not handler.cancelled()
    assert await node.presence.count("u1") == 0


async def test_a_socket_handler_cancelled_from_elsewhere_still_propagates(
    clock: ManualClock,
) -> None:
    node, _, _ = make_node(clock)
    socket = SilentSocket()
    conn = make_connection(socket, clock, abort=_Abort(None))
    assert await node.admit(conn, "welcome") is None
    handler = asyncio.create_task(make_gateway(node, clock)._run(socket, conn))  # type: ignore[arg-type]
    await settle()
    handler.cancel()  # a server shutting down, say: not ours to swallow
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert await node.presence.count("u1") == 0


def test_rate_limit_is_a_token_bucket(clock: ManualClock) -> None:
    conn = make_connection(FakeSocket(), clock)
    now = 1000.0
    conn.received(now)  # resets the bucket's clock
    assert [conn.received(now) for _ in range(3)] == [True, True, False]
    assert conn.received(now + 0.1)  # 10 a second: one more after 0.1 s
    assert not conn.received(now + 0.1)


# -- tickets -------------------------------------------------------------------------------


async def test_tickets_are_single_use_and_expire(clock: ManualClock) -> None:
    tickets = Tickets(
        store=MemoryTicketStore(clock=clock, max_tickets=10),
        clock=clock,
        randomness=SystemRandomness(),
        ttl=30,
    )
    args: dict[str, Any] = {
        "user_id": "u1",
        "session_id": "s1",
        "scopes": frozenset({"realtime"}),
        "method": "cookie",
        "credential_expires_at": clock.now() + timedelta(seconds=10),
    }
    ticket, grant = await tickets.issue(**args)
    assert looks_like_ticket(ticket)
    assert grant.expires_at == clock.now() + timedelta(seconds=10)  # never past the credential
    assert (await tickets.redeem(ticket)) == grant
    assert await tickets.redeem(ticket) is None
    ticket, _ = await tickets.issue(**args)
    clock.advance(10)
    assert await tickets.redeem(ticket) is None
    for bad in ("", "wwt_", "x" * 10, "wwt_" + "é" * 10, "wwt_" + "a" * 200):
        assert await tickets.redeem(bad) is None


async def test_ticket_store_is_bounded(clock: ManualClock) -> None:
    store = MemoryTicketStore(clock=clock, max_tickets=2)
    tickets = Tickets(store=store, clock=clock, randomness=SystemRandomness(), ttl=5)
    args: dict[str, Any] = {
        "user_id": "u1",
        "session_id": None,
        "scopes": frozenset(),
        "method": "cookie",
        "credential_expires_at": None,
    }
    await tickets.issue(**args)
    await tickets.issue(**args)
    with pytest.raises(RateLimited):
        await tickets.issue(**args)
    clock.advance(6)  # the expired ones make room
    await tickets.issue(**args)
    assert len(store) == 1


# -- node ----------------------------------------------------------------------------------


def limits(**overrides: Any) -> Limits:
    values: dict[str, Any] = {
        "max_per_user": 2,
        "max_message_bytes": 1024,
        "max_event_bytes": 1024,
        "max_subscriptions": 5,
        "send_queue": 16,
        "rate": 10.0,
        "burst": 10,
        "ping_interval": 10.0,
        "pong_timeout": 5.0,
        "auth_timeout": 1.0,
        "refresh_window": 30.0,
        "credential_max_age": 0.0,
        "sweep_interval": 1.0,
        "close_timeout": 1.0,
        "touch_interval": 60.0,
    }
    values.update(overrides)
    return Limits(**values)


def make_node(clock: ManualClock, **overrides: Any) -> tuple[RealtimeNode, LocalBus, list[str]]:
    bus = LocalBus()
    touched: list[str] = []
    node = RealtimeNode(
        node_id="n1",
        bus=bus,
        clock=clock,
        randomness=SystemRandomness(),
        presence=MemoryPresence(),
        limits=limits(**overrides),
        history_size=100,
        touch_session=touched.append,
    )
    return node, bus, touched


async def test_node_admits_up_to_the_limit_and_fans_out_through_the_bus(
    clock: ManualClock,
) -> None:
    node, _, _ = make_node(clock)
    sockets = [FakeSocket() for _ in range(3)]
    conns = [make_connection(s, clock, id=f"c{n}") for n, s in enumerate(sockets)]
    assert await node.admit(conns[0], "welcome-0") is None
    assert await node.admit(conns[1], "welcome-1") is None
    assert await node.admit(conns[2], "welcome-2") is closecodes.CONNECTION_LIMIT
    await node.publish("user:u1", "hello", {"n": 1})
    await settle()
    for socket in sockets[:2]:
        assert socket.sent[0].startswith("welcome")
        hello = [m for m in (json.loads(t) for t in socket.sent[1:]) if m["event"] == "hello"]
        assert hello[0]["data"] == {"n": 1}
    assert sockets[2].sent == []
    assert [e.connection_id for e in await node.presence.list("u1")] == ["c0", "c1"]
    await node.leave(conns[0])
    assert await node.presence.count("u1") == 1


async def test_node_closes_a_revoked_sessions_sockets_and_tells_the_others(
    clock: ManualClock,
) -> None:
    node, _, _ = make_node(clock)
    a, b = FakeSocket(), FakeSocket()
    conn_a = make_connection(a, clock, id="a", session_id="s1")
    conn_b = make_connection(b, clock, id="b", session_id="s2")
    await node.admit(conn_a, "w")
    await node.admit(conn_b, "w")
    await node.on_control(events.session_revoked("s1", "u1", "logout", 0.0))
    await settle()
    assert a.closes == [(4003, "session_revoked: logout")]
    assert b.closes == []
    notice = [
        m for m in map(json.loads, b.sent[1:]) if m.get("event") == "security.session_revoked"
    ]
    assert notice[0]["data"] == {"session_id": "s1", "reason": "logout"}
    await node.on_control(events.user_changed("u1", disabled=True))
    await settle()
    # Everything a credential opened ends with it, with the same code as a session: 4003.
    assert b.closes == [(4003, "session_revoked: user_disabled")]


def sweep_and_ping(node: RealtimeNode, mono: float) -> None:
    """A sweep, then its pings at once (the node spreads them over the next interval)."""
    node.ping(node.sweep(mono), mono)


async def test_sweep_pings_then_closes_a_silent_connection(clock: ManualClock) -> None:
    node, _, _ = make_node(clock)
    socket = FakeSocket()
    conn = make_connection(socket, clock)
    await node.admit(conn, "w")
    start = conn.last_received
    sweep_and_ping(node, start + 5)
    await settle()
    assert protocol.PING not in socket.sent
    sweep_and_ping(node, start + 10)
    await settle()
    assert protocol.PING in socket.sent
    sweep_and_ping(node, start + 14)
    assert not conn.closing
    sweep_and_ping(node, start + 15)
    await settle()
    assert socket.closes == [(4102, "no_pong")]


async def silent_sockets(
    clock: ManualClock, count: int
) -> tuple[RealtimeNode, list[FakeSocket], list[Connection], float]:
    """A node (one ping per 10 s, one sweep per second) with ``count`` sockets admitted
    together, and when the last of them was heard from."""
    node, _, _ = make_node(clock)
    sockets = [FakeSocket() for _ in range(count)]
    conns = [
        make_connection(socket, clock, id=f"c{n}", user_id=f"u{n}", session_id=None)
        for n, socket in enumerate(sockets)
    ]
    for conn in conns:
        assert await node.admit(conn, "w") is None
    return node, sockets, conns, max(conn.last_received for conn in conns)


async def test_sockets_due_together_are_pinged_a_bounded_batch_per_sweep(
    clock: ManualClock,
) -> None:
    node, sockets, conns, start = await silent_sockets(clock, 250)
    assert node.ping_budget() == 100  # the floor: twice 250 / 10 is 50
    pinged = []
    for sweep in range(3):
        sweep_and_ping(node, start + 10 + sweep)
        await settle()
        pinged.append(sum(protocol.PING in socket.sent for socket in sockets))
    assert pinged == [100, 200, 250]
    # A socket pinged at a later sweep is judged by its own ping (pong timeout 5 s): the
    # batches pinged at 10, 11 and 12 s close at 15, 16 and 17 s.
    closed = []
    for sweep in range(3):
        sweep_and_ping(node, start + 15 + sweep)
        closed.append(sum(conn.closing for conn in conns))
    assert closed == [100, 200, 250]


async def test_a_sweeps_pings_are_spread_over_the_time_to_the_next_sweep(
    clock: ManualClock,
) -> None:
    node, sockets, conns, start = await silent_sockets(clock, 250)
    due = node.sweep(start + 10)
    assert len(due) == 100 and not any(protocol.PING in s.sent for s in sockets)
    conns[1].received(start + 10)  # heard from since the sweep: not pinged
    pinged_by_slice, slept = [], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await settle()
        pinged_by_slice.append(sum(protocol.PING in socket.sent for socket in sockets))

    with patch("watchword.web.realtime.node.monotonic", return_value=start + 10):
        await node.ping_spread(due, sleep=sleep)
    assert pinged_by_slice == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]
    assert slept == [0.1] * 10  # the whole interval to the next sweep
    # A ping already waiting for its pong is not sent again (its timeout runs from the first).
    node.ping(due, start + 12)
    assert conns[0].awaiting_pong_since == start + 10
    slept.clear()
    await node.ping_spread([], sleep=sleep)
    assert slept == [1.0]


def test_the_ping_budget_grows_with_the_sockets(clock: ManualClock) -> None:
    node, _, _ = make_node(clock, ping_interval=25.0)
    for n in range(1000):
        node.hub.add(make_connection(FakeSocket(), clock, id=f"c{n}", user_id=f"u{n}"))
    assert node.ping_budget() == 100
    for n in range(1000, 10_000):
        node.hub.add(make_connection(FakeSocket(), clock, id=f"c{n}", user_id=f"u{n}"))
    assert node.ping_budget() == 800  # twice 10,000 / 25 per one-second sweep


async def test_an_answered_ping_keeps_the_connection(clock: ManualClock) -> None:
    node, _, _ = make_node(clock)
    conn = make_connection(FakeSocket(), clock)
    await node.admit(conn, "w")
    start = conn.last_received
    sweep_and_ping(node, start + 10)
    conn.received(start + 11)  # the pong
    sweep_and_ping(node, start + 16)
    assert not conn.closing


async def test_sweep_asks_for_refresh_then_closes_at_the_deadline(clock: ManualClock) -> None:
    node, _, touched = make_node(clock, credential_max_age=100.0, touch_interval=1.0)
    socket = FakeSocket()
    principal = Principal(
        kind="user",
        method=AuthMethod.BEARER_JWT,
        user_id="u1",
        session_id="s1",
        expires_at=clock.now() + timedelta(seconds=300),
    )
    expires_at = node.expiry_for(principal)
    assert expires_at == clock.now() + timedelta(seconds=100)  # capped by the max age
    conn = make_connection(socket, clock, expires_at=expires_at)
    await node.admit(conn, "w")
    mono = conn.last_received
    clock.advance(60)
    node.sweep(mono + 2)
    await settle()
    assert not [m for m in socket.sent if "refresh_required" in m]
    assert touched == ["s1"]  # the live socket keeps its session from idling out
    clock.advance(15)
    node.sweep(mono + 3)
    await settle()
    notices = [json.loads(m) for m in socket.sent if "refresh_required" in m]
    assert len(notices) == 1
    assert notices[0]["expires_in"] == 25.0
    node.sweep(mono + 4)  # asked once only
    await settle()
    assert len([m for m in socket.sent if "refresh_required" in m]) == 1
    clock.advance(25)
    node.sweep(mono + 5)
    await settle()
    assert socket.closes == [(4101, "credential_expired")]


async def test_stop_tells_every_socket_to_go_away(clock: ManualClock) -> None:
    node, _, _ = make_node(clock)
    sockets = [FakeSocket(), FakeSocket()]
    for n, socket in enumerate(sockets):
        await node.admit(make_connection(socket, clock, id=f"c{n}", user_id=f"u{n}"), "w")
    await node.start()
    await node.stop()
    assert [s.closes for s in sockets] == [[(4100, "going_away")]] * 2
    assert node.stopping


async def test_malformed_bus_messages_are_dropped(clock: ManualClock) -> None:
    node, bus, _ = make_node(clock)
    socket = FakeSocket()
    await node.admit(make_connection(socket, clock), "w")
    await bus.publish("realtime", {"channel": 5, "id": "x"})
    await bus.publish("realtime", {"channel": "user:u1"})
    await settle()
    assert socket.sent == ["w"]


class DownBus(LocalBus):
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        raise StoreUnavailable("The event bus is unavailable.")


async def test_a_bus_outage_drops_notices_but_not_sockets(clock: ManualClock) -> None:
    node = RealtimeNode(
        node_id="n1",
        bus=DownBus(),
        clock=clock,
        randomness=SystemRandomness(),
        presence=MemoryPresence(),
        limits=limits(),
        history_size=10,
    )
    socket = FakeSocket()
    conn = make_connection(socket, clock)
    assert await node.admit(conn, "w") is None  # presence.joined could not go out
    session = Session(
        id="s9",
        user_id="u1",
        secret_hash=None,
        created_at=clock.now(),
        last_seen_at=clock.now(),
        expires_at=clock.now(),
        idle_timeout_seconds=60,
    )
    await node.on_session_created(session)  # the sign-in notice is dropped, not raised
    with pytest.raises(StoreUnavailable):
        await node.publish("user:u1", "x", None)  # an explicit publish fails closed (503)
    await node.leave(conn)
    assert len(node.hub) == 0
