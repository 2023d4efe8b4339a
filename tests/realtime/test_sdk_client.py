"""``watchword.sdk.RealtimeClient`` against a real server, and its close-code table."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import PASSWORD
from tests.realtime.conftest import Server
from tests.realtime.helpers import WAIT, admin, publish, register, sign_in
from watchword.sdk import AsyncWatchwordClient
from watchword.sdk.realtime import (
    CLOSE_CODES,
    PublishRefused,
    RealtimeClient,
    RealtimeClosed,
    SubscriptionRefused,
    may_reconnect,
    publish_event,
)
from watchword.web.realtime import closecodes


def test_the_sdk_table_is_the_servers() -> None:
    server_table = {c.code: (c.name, c.reconnect, c.new_credential) for c in closecodes.ALL}
    assert server_table == CLOSE_CODES
    for code in (None, 1000, 1001, 1006, 1012, 4003, 4050, 4101, 4150, 4999):
        assert may_reconnect(code) == closecodes.may_reconnect(code)


def test_the_url_must_be_a_websocket_url() -> None:
    with pytest.raises(ValueError):
        RealtimeClient("http://127.0.0.1/v1/realtime", lambda: "t")


@pytest.mark.e2e
async def test_events_refresh_over_the_socket_and_revocation_ends_iteration(
    short_server: Server,
) -> None:
    device = await sign_in(short_server, await register(short_server))
    tickets = 0

    async def ticket() -> str:
        nonlocal tickets
        tickets += 1
        return await device.ticket()

    boss = await admin(short_server)
    async with RealtimeClient(short_server.ws, ticket, credential="ticket") as client:
        assert client.welcome is not None
        assert client.welcome["user_id"] == device.user_id
        # Credentials here last 3 s, with a reminder 2 s before: refreshes happen every
        # second or so, over the same socket.
        for n in range(6):
            await publish(boss, user_id=device.user_id, event="tick", data=n)
            event = await client.next_event(WAIT)
            while event.event != "tick":
                event = await client.next_event(WAIT)
            assert event.data == n
            await asyncio.sleep(0.5)
        assert tickets >= 3  # the first connection, then refreshes
        assert client.connections == 1  # never reconnected: every refresh was in-socket
        await device.http.delete(f"/v1/sessions/{device.session_id}")
        with pytest.raises(RealtimeClosed) as caught:
            async for _ in client:
                pass
        assert caught.value.code == 4003
        assert caught.value.reason == "session_revoked: revoked"


@pytest.mark.e2e
async def test_reconnects_after_a_missed_deadline_and_resumes(short_server: Server) -> None:
    device = await sign_in(short_server, await register(short_server))
    boss = await admin(short_server)
    calls = 0

    async def ticket() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            return "wwt_not-a-ticket"  # the refresh fails: the deadline passes (4101)
        if calls == 3:
            # Reconnecting: these are published while no socket of the user is open.
            for n in range(3):
                await publish(boss, user_id=device.user_id, event="missed", data=n)
        return await device.ticket()

    async with RealtimeClient(
        short_server.ws, ticket, credential="ticket", backoff_min=0.05, backoff_max=0.2
    ) as client:
        await publish(boss, user_id=device.user_id, event="seen", data=None)
        assert (await client.next_event(WAIT)).event == "seen"
        got = []
        while len(got) < 3:
            event = await client.next_event(WAIT)
            if event.event == "missed":
                got.append(event.data)
        assert got == [0, 1, 2]
        assert client.connections == 2


@pytest.mark.e2e
async def test_subscriptions_survive_and_refusals_raise(server: Server) -> None:
    device = await sign_in(server, await register(server))
    async with RealtimeClient(server.ws, device.ticket, credential="ticket") as client:
        await client.subscribe("news")
        with pytest.raises(SubscriptionRefused) as refused:
            await client.subscribe("sports")
        assert refused.value.code == "forbidden"
        boss = await admin(server)
        await publish(boss, channel="news", event="headline", data="x")
        event = await client.next_event(WAIT)
        while event.event != "headline":
            event = await client.next_event(WAIT)
        assert event.channel == "news"
        assert client.channels == {"news"}


@pytest.mark.e2e
async def test_a_terminal_refusal_at_connect_raises(server: Server) -> None:
    client = RealtimeClient(server.ws, lambda: "wwt_unknown", credential="ticket")
    with pytest.raises(RealtimeClosed) as caught:
        await client.connect()
    assert caught.value.code == 4002
    await client.close()


@pytest.mark.e2e
async def test_publishing_from_python(server: Server) -> None:
    email = await register(server)
    device = await sign_in(server, email)
    async with (
        AsyncWatchwordClient(server.http) as publisher,
        AsyncWatchwordClient(server.http) as plain_user,
        RealtimeClient(server.ws, device.ticket, credential="ticket") as client,
    ):
        await publisher.login("admin@example.com", PASSWORD)
        event_id = await publish_event(
            publisher, "order.shipped", {"order": 42}, user_id=device.user_id
        )
        event = await client.next_event(WAIT)
        while event.event != "order.shipped":
            event = await client.next_event(WAIT)
        assert (event.id, event.data) == (event_id, {"order": 42})

        await plain_user.login(email, PASSWORD)
        with pytest.raises(PublishRefused) as refused:
            await publish_event(plain_user, "x", user_id=device.user_id)
        assert (refused.value.status, refused.value.code) == (403, "insufficient_scope")
        with pytest.raises(PublishRefused) as refused:
            await publish_event(publisher, "bad name!", channel="news")
        assert refused.value.status == 400
        with pytest.raises(ValueError):
            await publish_event(publisher, "x", user_id="a", channel="b")
