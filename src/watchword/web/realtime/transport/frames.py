"""Fan-out without a task per socket: one frame encoded per message, written straight to sockets.

A publish to a user's 10,000 sockets would otherwise build 10,000 identical WebSocket frames and
start 10,000 writer tasks. Frames a server sends are unmasked, so a text message has the same
bytes on every uncompressed connection: it is encoded once (wsproto's frame encoder) and written
with ``transport.write``, which only appends to the socket's kernel or user-space buffer and
never waits. The buffer is bounded by the caller (``buffered``), so a slow reader is cut off
instead of growing memory.

The writer is reached through an ASGI scope extension set by the outermost layer of the app
(``RealtimeEntry``), which still sees the server's own ``send``. Only uvicorn's wsproto
protocol is recognised (the one ``watchword serve`` runs); any other server, or a connection
that negotiated compression, keeps the ordinary ASGI send path.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope, Send
from wsproto.frame_protocol import FrameProtocol

EXTENSION = "watchword.frame_writer"

_last_text: str | None = None
_last_frame: bytes = b""


def text_frame(text: str) -> bytes:
    """The unmasked, final text frame of ``text``; the same string object is encoded once
    (a fan-out hands every socket the same object)."""
    global _last_text, _last_frame
    if text is not _last_text:
        _last_frame = bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))
        _last_text = text
    return _last_frame


class FrameWriter:
    """Writes pre-encoded frames to one accepted uvicorn wsproto connection."""

    __slots__ = ("_plain", "_protocol")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._plain: bool | None = None

    def release(self) -> None:
        """Let go of the connection once its app has returned. The server's connection holds
        its scope, the scope this writer, and the writer the connection: a cycle only the
        collector could free, one per closed socket."""
        self._protocol = None

    def offer(self, frame: bytes, bound: int) -> bool | None:
        """Write ``frame`` unless the reader is behind by ``bound`` bytes (``False``);
        ``None`` when this connection cannot take pre-encoded frames (not accepted yet,
        closing, compressed, or released): the caller uses the ordinary send path."""
        protocol = self._protocol
        if protocol is None:
            return None
        plain = self._plain
        if plain is None:
            connection = protocol.conn.connection if protocol.handshake_complete else None
            if connection is None:
                return None
            plain = self._plain = not connection._proto.extensions
        transport = protocol.transport
        if not plain or protocol.close_sent or transport.is_closing():
            return None
        if transport.get_write_buffer_size() >= bound:
            return False
        transport.write(frame)
        return True


def writer_for(send: Send) -> FrameWriter | None:
    protocol = getattr(send, "__self__", None)
    if protocol is None or type(protocol).__module__ != "uvicorn.protocols.websockets.wsproto_impl":
        return None
    if not all(hasattr(protocol, name) for name in ("transport", "conn", "close_sent")):
        return None
    return FrameWriter(protocol)


def frame_writer(scope: Scope) -> FrameWriter | None:
    extensions = scope.get("extensions") or {}
    writer = extensions.get(EXTENSION)
    return writer if isinstance(writer, FrameWriter) else None
