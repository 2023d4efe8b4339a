"""End to end with short timers: expiring tickets and credentials, refresh, dead peers."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
import websockets

from tests.realtime.conftest import Server, make_server
from tests.realtime.helpers import (
    closed,
    connect,
    connect_device,
    next_message,
    register,
    sign_in,
)
from watchword.web.realtime.closecodes import may_reconnect

pytestmark = pytest.mark.e2e


async def test_expired_ticket_is_refused(short_server: Server) -> None:
    device = await sign_in(short_server, await register(short_server))
    ticket = await device.ticket()
    await asyncio.sleep(2.2)  # the ticket lives two seconds
    ws = await connect(short_server, "?ticket=" + ticket)
    code, reason = await closed(ws)
    assert code == 4002
    assert reason is not None and "ticket" in reason


async def test_connection_is_told_to_refresh_then_closed_at_the_deadline(
    short_server: Server,
) -> None:
    device = await sign_in(short_server, await register(short_server))
    ws = await connect_device(short_server, device)
    notice = await next_message(ws)
    assert notice["type"] == "refresh_required"
    assert notice["deadline"]
    assert notice["expires_in"] <= 3
    # No refresh: closed, and told it may come back with a fresh credential.
    code, reason = await closed(ws)
    assert (code, reason) == (4101, "credential_expired")
    assert may_reconnect(code)


async def test_refresh_over_the_socket_extends_the_connection(short_server: Server) -> None:
    device = await sign_in(short_server, await register(short_server))
    ws = await connect(short_server, "?ticket=" + await device.ticket())
    welcome = await next_message(ws)
    for _ in range(3):  # three deadlines in a row, each met by a refresh
        notice = await next_message(ws)
        assert notice["type"] == "refresh_required"
        await ws.send(json.dumps({"type": "refresh", "ticket": await device.ticket(), "ref": "r"}))
        refreshed = await next_message(ws)
        assert refreshed["type"] == "refreshed"
        assert refreshed["ref"] == "r"
        assert refreshed["expires_at"] > welcome["expires_at"]
    await ws.close()


async def test_refresh_with_another_users_credential_is_refused(short_server: Server) -> None:
    device = await sign_in(short_server, await register(short_server))
    other = await sign_in(short_server, await register(short_server))
    ws = await connect_device(short_server, device)
    await ws.send(json.dumps({"type": "refresh", "ticket": await other.ticket()}))
    assert await closed(ws) == (4006, "refresh_refused: another user or session")


async def test_refresh_with_another_session_of_the_same_user_is_refused(
    short_server: Server,
) -> None:
    email = await register(short_server)
    device, second = await sign_in(short_server, email), await sign_in(short_server, email)
    ws = await connect_device(short_server, device)
    await ws.send(json.dumps({"type": "refresh", "ticket": await second.ticket()}))
    assert (await closed(ws))[0] == 4006


async def test_refresh_with_a_bad_credential_is_an_error_not_a_close(
    short_server: Server,
) -> None:
    device = await sign_in(short_server, await register(short_server))
    ws = await connect_device(short_server, device)
    await ws.send(json.dumps({"type": "refresh", "ticket": "wwt_unknown", "ref": "1"}))
    while (answer := await next_message(ws))["type"] == "refresh_required":
        pass
    assert answer["type"] == "error"
    assert answer["code"] == "invalid_ticket"
    assert answer["ref"] == "1"
    await ws.close()


async def test_a_client_that_never_answers_pings_is_closed(short_server: Server) -> None:
    device = await sign_in(short_server, await register(short_server))
    ws = await connect(short_server, "?ticket=" + await device.ticket())
    seen = []
    with pytest.raises(websockets.ConnectionClosed):
        for _ in range(100):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
    assert "ping" in seen
    assert ws.close_code == 4102
    assert may_reconnect(4102)


async def test_no_credential_within_the_deadline_closes_with_4001(short_server: Server) -> None:
    ws = await connect(short_server)
    assert await closed(ws) == (4001, "unauthenticated: no credential in time")


async def test_shutdown_tells_clients_to_reconnect(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = make_server(tmp_path_factory.mktemp("realtime-shutdown"))
    server.start()
    try:
        device = await sign_in(server, await register(server))
        ws = await connect_device(server, device)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        code, _ = await closed(ws)
        # uvicorn closes sockets with 1012 (service restart) before the app's own shutdown;
        # under a server that runs the lifespan first, the gateway sends 4100 (going_away).
        assert code in (1012, 4100)
        assert may_reconnect(code)
    finally:
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert server.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
