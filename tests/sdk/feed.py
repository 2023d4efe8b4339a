"""A fake revocation stream on MockTransport: each connection is a queue the test writes to."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

SSE_HEADERS = {"content-type": "text/event-stream"}


def snapshot(
    sessions: dict[str, float] | None = None, jtis: dict[str, float] | None = None, cursor: int = 0
) -> bytes:
    data = {"sessions": sessions or {}, "jtis": jtis or {}, "cursor": cursor}
    return f"event: snapshot\ndata: {json.dumps(data)}\n\n".encode()


def revoked(kind: str, ident: str, until: float, event_id: int) -> bytes:
    data = json.dumps({"kind": kind, "id": ident, "until": until})
    return f"event: revoked\nid: {event_id}\ndata: {data}\n\n".encode()


class AsyncFeed:
    """For the asyncio consumer: ``send`` writes to the newest connection, ``end`` closes it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.streams: list[asyncio.Queue[bytes | None]] = []
        self.status = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "nope", "message": "refused"})
        stream: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.streams.append(stream)

        async def body() -> AsyncIterator[bytes]:
            while (chunk := await stream.get()) is not None:
                yield chunk

        return httpx.Response(200, headers=SSE_HEADERS, content=body())

    def send(self, chunk: bytes) -> None:
        self.streams[-1].put_nowait(chunk)

    def end(self) -> None:
        self.streams[-1].put_nowait(None)


class ThreadFeed:
    """The same for the thread consumer; every stream also ends once ``closing`` is set."""

    def __init__(self, closing: threading.Event) -> None:
        self.requests: list[httpx.Request] = []
        self.streams: list[queue.Queue[bytes | None]] = []
        self.closing = closing
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        stream: queue.Queue[bytes | None] = queue.Queue()
        with self.lock:
            self.requests.append(request)
            self.streams.append(stream)

        def body() -> Iterator[bytes]:
            while not self.closing.is_set():
                try:
                    chunk = stream.get(timeout=0.01)
                except queue.Empty:
                    continue
                if chunk is None:
                    return
                yield chunk

        return httpx.Response(200, headers=SSE_HEADERS, content=body())

    def send(self, chunk: bytes) -> None:
        with self.lock:
            self.streams[-1].put(chunk)


def header(request: httpx.Request, name: str) -> Any:
    return request.headers.get(name)
