"""End to end against ``watchword serve``: devices, fan-out, channels, revocation, limits."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.realtime.conftest import Server
from tests.realtime.helpers import (
    WAIT,
    StalledReader,
    admin,
    closed,
    connect,
    connect_device,
    next_event,
    next_message,
    publish,
    register,
    sign_in,
)

pytestmark = pytest.mark.e2e


async def test_two_devices_of_one_user_both_receive_and_another_user_does_not(
    server: Server,
) -> None:
    email = await register(server)
    phone, laptop = await sign_in(server, email, "phone"), await sign_in(server, email, "laptop")
    stranger = await sign_in(server, await register(server))
    ws_phone = await connect_device(server, phone)
    ws_laptop = await connect_device(server, laptop)
    ws_stranger = await connect_device(server, stranger)
    boss = await admin(server)

    for n in range(5):
        response = await publish(boss, user_id=phone.user_id, event="order.updated", data={"n": n})
        assert response.status_code == 202, response.text
        assert response.json()["channel"] == f"user:{phone.user_id}"
    # A marker for the stranger, published last: once it arrives, anything addressed to the
    # stranger by the five events above would have arrived before it.
    await publish(boss, user_id=stranger.user_id, event="marker", data=None)

    for ws in (ws_phone, ws_laptop):
        got = [await next_event(ws, "order.updated") for _ in range(5)]
        assert [e["data"]["n"] for e in got] == [0, 1, 2, 3, 4]  # publish order
        assert len({e["id"] for e in got}) == 5
        assert all(e["channel"] == f"user:{phone.user_id}" for e in got)
    while True:
        message = await next_message(ws_stranger)
        assert message.get("event") != "order.updated"
        if message.get("event") == "marker":
            break
    for ws in (ws_phone, ws_laptop, ws_stranger):
        await ws.close()


async def test_welcome_names_connection_user_session_and_expiry(server: Server) -> None:
    device = await sign_in(server, await register(server))
    ws = await connect(server, "?ticket=" + await device.ticket())
    assert ws.subprotocol == "watchword.v1"
    welcome = await next_message(ws)
    assert welcome["type"] == "welcome"
    assert welcome["user_id"] == device.user_id
    assert welcome["session_id"] == device.session_id
    assert welcome["connection_id"]
    assert welcome["expires_at"]  # the session's absolute expiry
    assert welcome["channels"] == [f"user:{device.user_id}"]
    await ws.close()


async def test_revoking_a_session_closes_its_socket_with_4003_and_spares_the_other(
    server: Server,
) -> None:
    email = await register(server)
    a, b = await sign_in(server, email, "A"), await sign_in(server, email, "B")
    ws_a, ws_b = await connect_device(server, a), await connect_device(server, b)

    response = await b.http.delete(f"/v1/sessions/{a.session_id}")
    assert response.status_code == 200, response.text

    code, reason = await closed(ws_a)
    assert code == 4003
    assert reason == "session_revoked: revoked"
    # B is still open: it is told about the revocation, then still gets events.
    notice = await next_event(ws_b, "security.session_revoked")
    assert notice["data"] == {"session_id": a.session_id, "reason": "revoked"}
    boss = await admin(server)
    await publish(boss, user_id=b.user_id, event="still.here", data=None)
    assert (await next_event(ws_b, "still.here"))["event"] == "still.here"
    await ws_b.close()


async def test_logout_and_cli_revocation_close_with_the_reason(server: Server) -> None:
    email = await register(server)
    a, b = await sign_in(server, email), await sign_in(server, email)
    ws_a, ws_b = await connect_device(server, a), await connect_device(server, b)
    assert (await a.http.post("/v1/auth/logout")).status_code == 200
    assert await closed(ws_a) == (4003, "session_revoked: logout")

    # From the command line: the running server learns it from the control feed it polls.
    result = await asyncio.to_thread(server.cli, "sessions", "revoke", b.session_id)
    assert result.returncode == 0, result.stderr
    code, reason = await closed(ws_b)
    assert code == 4003
    assert reason is not None and reason.startswith("session_revoked")


async def test_disabling_a_user_closes_all_their_sockets(server: Server) -> None:
    email = await register(server)
    a, b = await sign_in(server, email), await sign_in(server, email)
    ws_a, ws_b = await connect_device(server, a), await connect_device(server, b)
    result = await asyncio.to_thread(server.cli, "users", "disable", email)
    assert result.returncode == 0, result.stderr
    for ws in (ws_a, ws_b):
        code, _ = await closed(ws)
        assert code in (4003, 4005)  # the sessions are revoked and the user disabled


async def test_new_sign_in_is_announced_to_the_users_sockets(server: Server) -> None:
    email = await register(server)
    first = await sign_in(server, email)
    ws = await connect_device(server, first)
    second = await sign_in(server, email, "tablet")
    event = await next_event(ws, "security.sign_in")
    assert event["data"]["session_id"] == second.session_id
    assert event["data"]["device_name"] == "tablet"
    await ws.close()


async def test_ticket_is_single_use(server: Server) -> None:
    device = await sign_in(server, await register(server))
    ticket = await device.ticket()
    ws = await connect(server, "?ticket=" + ticket)
    assert (await next_message(ws))["type"] == "welcome"
    again = await connect(server, "?ticket=" + ticket)
    code, reason = await closed(again)
    assert code == 4002
    assert reason is not None and "ticket" in reason
    await ws.close()


async def test_ticket_needs_an_authenticated_caller_and_csrf(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as anonymous:
        response = await anonymous.post("/v1/realtime/ticket")
        assert response.status_code == 401
    device = await sign_in(server, await register(server))
    del device.http.headers["X-CSRF-Token"]
    response = await device.http.post("/v1/realtime/ticket")
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


async def test_unknown_and_malformed_tickets_are_refused(server: Server) -> None:
    for ticket in ("wwt_" + "x" * 43, "nonsense", "wwt_" + "y" * 300):
        ws = await connect(server, "?ticket=" + ticket)
        code, _ = await closed(ws)
        assert code == 4002


async def test_cookie_needs_an_allowed_origin(server: Server) -> None:
    device = await sign_in(server, await register(server))
    cookie = {"Cookie": f"watchword_session={device.cookie}"}
    foreign = await connect(
        server, additional_headers=cookie, origin=websockets.Origin("https://evil.example")
    )
    assert await closed(foreign) == (4004, "origin_not_allowed")
    no_origin = await connect(server, additional_headers=cookie)
    assert (await closed(no_origin))[0] == 4004
    own = await connect(server, additional_headers=cookie, origin=websockets.Origin(server.http))
    welcome = await next_message(own)
    assert welcome["type"] == "welcome"
    assert welcome["session_id"] == device.session_id
    await own.close()


async def test_a_bad_cookie_is_refused(server: Server) -> None:
    ws = await connect(
        server,
        additional_headers={"Cookie": "watchword_session=" + "A" * 43},
        origin=websockets.Origin(server.http),
    )
    assert (await closed(ws))[0] == 4002


async def test_first_message_auth(server: Server) -> None:
    device = await sign_in(server, await register(server))
    ws = await connect(server)
    await ws.send(json.dumps({"type": "auth", "ticket": await device.ticket()}))
    assert (await next_message(ws))["type"] == "welcome"
    await ws.close()
    wrong = await connect(server)
    await wrong.send(json.dumps({"type": "subscribe", "channel": "news"}))
    assert (await closed(wrong))[0] == 4001
    garbage = await connect(server)
    await garbage.send("{not json")
    assert (await closed(garbage))[0] == 4000


async def test_bearer_tokens_are_refused_when_invalid(server: Server) -> None:
    ws = await connect(server, subprotocols=["watchword.v1", "bearer.not-a-token"])
    assert (await closed(ws))[0] == 4002
    ws = await connect(server, "?access_token=not-a-token")
    assert (await closed(ws))[0] == 4002


async def test_channels_follow_scopes(server: Server) -> None:
    reader = await sign_in(server, await register(server))
    other = await sign_in(server, await register(server))
    ws = await connect_device(server, reader)
    ws_other = await connect_device(server, other)
    answers = {}
    for ref, channel in enumerate(
        ["news", "sports", f"user:{other.user_id}", f"user:{reader.user_id}", "bad name!"]
    ):
        await ws.send(json.dumps({"type": "subscribe", "channel": channel, "ref": str(ref)}))
        if channel == "bad name!":
            break
        message = await next_message(ws)
        answers[channel] = message
    assert answers["news"]["type"] == "subscribed"
    assert answers["news"]["ref"] == "0"
    assert answers["sports"] == {
        "type": "error",
        "code": "forbidden",
        "message": "You may not subscribe to 'sports'.",
        "ref": "1",
    }
    assert answers[f"user:{other.user_id}"]["code"] == "forbidden"
    assert answers[f"user:{reader.user_id}"]["type"] == "subscribed"
    assert (await closed(ws))[0] == 4000  # a malformed channel name is a protocol error

    ws = await connect_device(server, reader)
    await ws.send(json.dumps({"type": "subscribe", "channel": "news"}))
    assert (await next_message(ws))["type"] == "subscribed"
    boss = await admin(server)
    response = await publish(boss, channel="news", event="headline", data={"title": "hi"})
    assert response.status_code == 202
    event = await next_event(ws, "headline")
    assert event["channel"] == "news"
    await publish(boss, user_id=other.user_id, event="marker", data=None)
    while (message := await next_message(ws_other)).get("event") != "marker":
        assert message.get("event") != "headline"
    await ws.send(json.dumps({"type": "unsubscribe", "channel": "news"}))
    assert (await next_message(ws))["type"] == "unsubscribed"
    for socket in (ws, ws_other):
        await socket.close()


async def test_publish_requires_the_scope_and_valid_input(server: Server) -> None:
    user = await sign_in(server, await register(server))
    response = await publish(user, user_id=user.user_id, event="x", data=None)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    async with httpx.AsyncClient(base_url=server.http) as anonymous:
        response = await anonymous.post("/v1/realtime/publish", json={"user_id": "x", "event": "x"})
        assert response.status_code == 401
    boss = await admin(server)
    bad_bodies = [
        {"event": "x"},
        {"user_id": "a", "channel": "b", "event": "x"},
        {"channel": "user:abc", "event": "x"},
        {"channel": "news", "event": "bad event!"},
        {"user_id": "has space", "event": "x"},
        {"channel": "news", "event": "x", "extra": 1},
        {"channel": "news"},
    ]
    for body in bad_bodies:
        response = await publish(boss, **body)
        assert response.status_code in (400, 422), (body, response.text)
        assert "error" in response.json()
    response = await publish(boss, channel="news", event="big", data="x" * 950_000)
    assert response.status_code == 413


async def test_presence_lists_devices_and_announces_changes(server: Server) -> None:
    email = await register(server)
    a = await sign_in(server, email)
    ws_a = await connect_device(
        server, a, user_agent_header="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    )
    await ws_a.send(json.dumps({"type": "subscribe", "channel": f"presence:{a.user_id}"}))
    assert (await next_message(ws_a))["type"] == "subscribed"
    b = await sign_in(server, email)
    ws_b = await connect_device(server, b)
    joined = await next_event(ws_a, "presence.joined")
    assert joined["data"]["session_id"] == b.session_id

    response = await a.http.get("/v1/realtime/presence")
    assert response.status_code == 200
    listed = response.json()["connections"]
    assert {c["session_id"] for c in listed} == {a.session_id, b.session_id}
    assert any("Firefox" in c["device"] for c in listed)

    stranger = await sign_in(server, await register(server))
    response = await stranger.http.get("/v1/realtime/presence", params={"user_id": a.user_id})
    assert response.status_code == 403
    boss = await admin(server)
    response = await boss.http.get("/v1/realtime/presence", params={"user_id": a.user_id})
    assert response.status_code == 200
    assert len(response.json()["connections"]) == 2

    await ws_b.close()
    left = await next_event(ws_a, "presence.left")
    assert left["data"]["session_id"] == b.session_id
    await ws_a.close()


async def test_oversize_message_closes_with_4007(server: Server) -> None:
    device = await sign_in(server, await register(server))
    ws = await connect_device(server, device)
    await ws.send(json.dumps({"type": "ping", "ref": "x" * 5000}))
    code, reason = await closed(ws)
    assert code == 4007
    assert reason == "message_too_large: limit 4096 bytes"


async def test_flood_closes_with_4009(server: Server) -> None:
    device = await sign_in(server, await register(server))
    ws = await connect_device(server, device)
    try:
        # Messages that need no answer: only the rate limit can stop them.
        for _ in range(500):  # far past the burst of 30 at 20 messages a second
            await ws.send(json.dumps({"type": "pong"}))
    except websockets.ConnectionClosed:
        pass
    code, _ = await closed(ws)
    assert code == 4009


async def test_slow_consumer_is_cut_off(server: Server) -> None:
    device = await sign_in(server, await register(server))
    slow = StalledReader(f"{server.ws}?ticket={await device.ticket()}")
    welcome = await slow.open(server.port)
    assert welcome["user_id"] == device.user_id
    boss = await admin(server)
    chunk = "x" * 800_000
    published = 0
    for _ in range(40):  # 32 MB: far more than the socket buffers and a queue of 16
        response = await publish(boss, user_id=device.user_id, event="bulk", data=chunk)
        assert response.status_code == 202
        published += 1
    # The server gave up on it: what it had queued was dropped, and the close frame follows
    # whatever was already in the socket buffers.
    received = await slow.read_messages()
    slow.close()
    assert slow.close_code == 4103
    assert slow.close_reason == "slow_consumer: more than 16 queued"
    assert 0 < len(received) < published


async def test_per_user_connection_limit(server: Server) -> None:
    device = await sign_in(server, await register(server))
    sockets = [await connect_device(server, device) for _ in range(3)]
    extra = await connect(server, "?ticket=" + await device.ticket())
    assert await closed(extra) == (4008, "connection_limit")
    # The three stay open and served.
    for ws in sockets:
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert await next_message(ws) == {"type": "pong", "ref": "p"}
    await sockets[0].close()
    await asyncio.sleep(0)  # give the server a moment to notice before reconnecting
    for _ in range(50):
        ws = await connect(server, "?ticket=" + await device.ticket())
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if message.get("type") == "welcome":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("a slot freed by a closed connection was never reusable")
    for socket in [*sockets[1:], ws]:
        await socket.close()


async def test_resume_replays_missed_events(server: Server) -> None:
    device = await sign_in(server, await register(server))
    boss = await admin(server)
    ws = await connect_device(server, device)
    await publish(boss, user_id=device.user_id, event="seen", data=1)
    last = (await next_event(ws, "seen"))["id"]
    await ws.close()
    for n in range(3):
        await publish(boss, user_id=device.user_id, event="missed", data=n)
    ws = await connect_device(server, device)
    await ws.send(json.dumps({"type": "resume", "since": last, "ref": "r"}))
    replayed = [await next_event(ws, "missed") for _ in range(3)]
    assert [e["data"] for e in replayed] == [0, 1, 2]
    resumed = await next_message(ws)
    assert resumed == {"type": "resumed", "complete": True, "replayed": 3, "ref": "r"}
    await ws.send(json.dumps({"type": "resume", "since": "unknown-id"}))
    assert (await next_message(ws))["complete"] is False
    await ws.close()


async def test_abrupt_disconnects_leave_no_error_behind(server: Server) -> None:
    device = await sign_in(server, await register(server))
    waiting_for_auth = await connect(server)
    waiting_for_auth.transport.abort()
    connected = await connect_device(server, device)
    connected.transport.abort()
    # The server forgets them: the user's presence empties.
    for _ in range(100):
        response = await device.http.get("/v1/realtime/presence")
        if not response.json()["connections"]:
            break
        await asyncio.sleep(0.05)
    assert response.json()["connections"] == []
    assert "Traceback" not in server.log()


def test_no_ticket_or_cookie_reaches_the_log(server: Server) -> None:
    log = server.log()
    assert "WEBSOCKET /v1/realtime" in log  # sockets are logged, once authenticated...
    assert "wwt_" not in log  # ...but never their tickets
    assert "access_token=not-a-token" not in log
