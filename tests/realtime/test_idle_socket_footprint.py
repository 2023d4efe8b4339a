"""What an admitted socket keeps for its life: nothing parsed only for its handshake.

A socket may stay open for hours, ten thousand of them on one process: the headers and query
parameters read while authenticating it are parsed on a view that ends with the handshake,
not cached on the socket's ``WebSocket``, which lives as long as the socket.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.websockets import WebSocket

from tests.conftest import Client, ClientFactory
from tests.security.conftest import token_login


async def open_socket(client: Client, token: str) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A socket driven straight through the ASGI app: open until ``leave`` is set."""
    app: Any = client._transport.app  # type: ignore[attr-defined]
    welcomed, leave = asyncio.Event(), asyncio.Event()
    opened = False

    async def receive() -> dict[str, Any]:
        nonlocal opened
        if not opened:
            opened = True
            return {"type": "websocket.connect"}
        await leave.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            raise AssertionError(f"the socket was refused: {message}")
        if message["type"] == "websocket.send":
            assert json.loads(message["text"])["type"] == "welcome"
            welcomed.set()

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/v1/realtime",
        "raw_path": b"/v1/realtime",
        "root_path": "",
        "query_string": b"device=laptop",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"Firefox/120.0")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": ["watchword.v1", f"bearer.{token}"],
        "state": {},
    }
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(welcomed.wait(), 10)
    return task, leave


async def test_an_admitted_socket_keeps_no_parsed_handshake_headers_or_query(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory()
    await client.register()
    token = (await token_login(client))["access_token"]
    task, leave = await open_socket(client, token)
    try:
        realtime: Any = client._transport.app.state.realtime  # type: ignore[attr-defined]
        (conn,) = list(realtime.node.hub)
        socket = conn._transport
        assert isinstance(socket, WebSocket)
        # The handshake did read both (the user agent names the device; tickets and
        # ``?access_token=`` come in the query string): on a view, not on the socket.
        assert conn.device != ""
        assert "_headers" not in vars(socket)
        assert "_query_params" not in vars(socket)
    finally:
        leave.set()
        await asyncio.wait_for(task, 10)
