"""Small clients for the end-to-end tests: HTTP sign-in, tickets, sockets that answer pings."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from tests.helpers import PASSWORD
from tests.realtime.conftest import Server

WAIT = 10.0  # upper bound for anything that should happen "at once"; never a measurement


@dataclass
class Device:
    """One signed-in browser: its HTTP client (cookie + CSRF) and session."""

    http: httpx.AsyncClient
    user_id: str
    session_id: str
    cookie: str

    async def ticket(self) -> str:
        response = await self.http.post("/v1/realtime/ticket")
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    async def close(self) -> None:
        await self.http.aclose()


def new_email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@example.com"


async def register(server: Server, email: str | None = None) -> str:
    email = email or new_email()
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/v1/users", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
    return email


async def sign_in(server: Server, email: str, device_name: str | None = None) -> Device:
    http = httpx.AsyncClient(base_url=server.http)
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if device_name:
        body["device_name"] = device_name
    response = await http.post("/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    http.headers["X-CSRF-Token"] = data["csrf_token"]
    cookie = http.cookies.get("watchword_session")
    assert cookie
    return Device(http, data["user"]["id"], data["session"]["id"], cookie)


async def connect(server: Server, query: str = "", **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("subprotocols", ["watchword.v1"])
    kwargs.setdefault("open_timeout", WAIT)
    return await websockets.connect(server.ws + query, **kwargs)


async def connect_device(server: Server, device: Device, **kwargs: Any) -> ClientConnection:
    ws = await connect(server, "?ticket=" + await device.ticket(), **kwargs)
    welcome = await next_message(ws)
    assert welcome["type"] == "welcome", welcome
    return ws


async def next_message(ws: ClientConnection, *, answer_pings: bool = True) -> dict[str, Any]:
    """The next message that is not a ping (pings are answered)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), WAIT)
        message: dict[str, Any] = json.loads(raw)
        if message.get("type") == "ping" and answer_pings:
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message


async def next_event(ws: ClientConnection, name: str) -> dict[str, Any]:
    """The next event called ``name`` (other messages are skipped)."""
    while True:
        message = await next_message(ws)
        if message.get("type") == "event" and message.get("event") == name:
            return message


async def closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait (bounded) for the server's close; returns its code and reason."""
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), WAIT)
            message = json.loads(raw)
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
    except websockets.ConnectionClosed:
        pass
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason


async def admin(server: Server) -> Device:
    return await sign_in(server, "admin@example.com")


async def publish(admin_device: Device, **body: Any) -> httpx.Response:
    return await admin_device.http.post("/v1/realtime/publish", json=body)


class StalledReader:
    """A socket client that stops reading after the welcome, with a tiny receive buffer: the
    server's writes back up at once (a real slow consumer, not one the library hides)."""

    def __init__(self, url: str) -> None:
        self._protocol = ClientProtocol(
            parse_uri(url), subprotocols=[Subprotocol("watchword.v1")], max_size=None
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, port: int) -> dict[str, Any]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=4096)
        self._protocol.send_request(self._protocol.connect())
        await self._flush()
        messages = await self.read_messages(until=lambda m: m.get("type") == "welcome")
        return messages[-1]

    async def _flush(self) -> None:
        assert self._writer is not None
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._writer.write(chunk)
        await self._writer.drain()

    async def read_messages(self, until: Any = None, limit: int = 100_000) -> list[dict[str, Any]]:
        """Read (bounded in time and count) until ``until(message)`` or the close frame."""
        assert self._reader is not None
        got: list[dict[str, Any]] = []
        while len(got) < limit:
            data = await asyncio.wait_for(self._reader.read(65536), WAIT)
            if not data:
                self._protocol.receive_eof()
            else:
                self._protocol.receive_data(data)
            for event in self._protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    got.append(json.loads(event.data))
                    if until is not None and until(got[-1]):
                        return got
            await self._flush()
            if self._protocol.close_code is not None or not data:
                return got
        return got

    @property
    def close_code(self) -> int | None:
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        return self._protocol.close_reason

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
