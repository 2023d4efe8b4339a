"""What a socket served by uvicorn keeps while open, and what is left of it once closed.

An open socket drops wsproto's record of its opening handshake (the request and its headers,
h11's parser state), which it would otherwise keep for its life.

A closed socket is freed when it closes, by reference counting alone. Ten thousand sockets on
one process are most of its heap. Whatever of a closed socket stays in a reference cycle waits
for a full collection, which walks the whole heap (hundreds of milliseconds at that size, the
event loop held all along); and an object frozen out of the collector (``gc.freeze()``) that
ends in a cycle waits for a compaction (web/collector.py). So the socket served by ``watchword
serve`` (uvicorn's wsproto connection, with the fan-out's frame writer on it) must leave no
cycle behind: a test serves one through a real uvicorn server on loopback, closes it with the
collector switched off, and sees the server's connection object gone.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.handshake import H11Handshake

from tests.conftest import Client, ClientFactory
from tests.helpers import eventually
from tests.security.conftest import token_login
from watchword.web.realtime.transport.frames import FrameWriter, frame_writer


@pytest.fixture
async def served(client_factory: ClientFactory) -> AsyncIterator[tuple[Client, uvicorn.Server]]:
    """The test app (started) behind a real uvicorn server, on the protocol ``serve`` uses."""
    client = await client_factory()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        client._transport.app,  # type: ignore[attr-defined]
        ws="wsproto",
        lifespan="off",
        log_level="warning",
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield client, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        listener.close()


async def signed_in_socket(
    client: Client, server: uvicorn.Server
) -> tuple[websockets.ClientConnection, str]:
    """A user's socket to the served gateway, welcomed; and the user's id."""
    await client.register()
    login = await token_login(client)
    port = server.servers[0].sockets[0].getsockname()[1]
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/v1/realtime",
        subprotocols=["watchword.v1", f"bearer.{login['access_token']}"],  # type: ignore[list-item]
        ping_interval=None,
    )
    assert '"welcome"' in str(await asyncio.wait_for(ws.recv(), 10))
    return ws, login["user"]["id"]


async def test_a_closed_socket_is_freed_without_the_collector(
    served: tuple[Client, uvicorn.Server],
) -> None:
    client, server = served
    hub: Any = client._transport.app.state.realtime.node.hub  # type: ignore[attr-defined]
    ws, _ = await signed_in_socket(client, server)
    (connection,) = server.server_state.connections
    # The fan-out's writer is on this socket: the cycle it could make is in play.
    assert isinstance(frame_writer(connection.scope), FrameWriter)
    gone = weakref.ref(connection)
    del connection

    gc.collect()
    gc.disable()
    try:
        await ws.close()
        state = server.server_state
        await eventually(lambda: not state.connections and not state.tasks, "the server let go")
        await eventually(lambda: len(hub) == 0, "the gateway let go")
        await eventually(lambda: gone() is None, "the connection freed")
    finally:
        gc.enable()


async def test_an_open_socket_keeps_no_handshake_and_still_talks(
    served: tuple[Client, uvicorn.Server],
) -> None:
    client, server = served
    ws, user_id = await signed_in_socket(client, server)
    async with ws:
        (connection,) = server.server_state.connections
        assert not isinstance(connection.conn.handshake, H11Handshake)
        # Both ways still work after it went: a client ping is answered, an event arrives.
        await ws.send('{"type": "ping"}')
        assert '"pong"' in str(await asyncio.wait_for(ws.recv(), 10))
        realtime: Any = client._transport.app.state.realtime  # type: ignore[attr-defined]
        await realtime.node.publish(f"user:{user_id}", "hello", {"n": 1})
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (message["event"], message["data"]) == ("hello", {"n": 1})


class Protocol:
    def __init__(self, conn: WSConnection) -> None:
        self.conn = conn


def opened(accept: bool = True) -> WSConnection:
    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(
        b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert isinstance(next(conn.events()), Request)  # read, not answered yet
    if accept:
        conn.send(AcceptConnection())
    return conn


def test_the_handshake_is_kept_until_the_connection_is_open_and_its_events_read() -> None:
    not_open = opened(accept=False)
    assert FrameWriter(Protocol(not_open)).shed_handshake() is False
    assert isinstance(not_open.handshake, H11Handshake)

    pending = opened()
    pending.handshake._events.append(Request(host="x", target="/"))
    assert FrameWriter(Protocol(pending)).shed_handshake() is False
    assert isinstance(pending.handshake, H11Handshake)

    conn = opened()
    assert FrameWriter(Protocol(conn)).shed_handshake() is True
    assert list(conn.events()) == []
