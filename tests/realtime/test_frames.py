"""The fan-out fast path: one frame per message, written without a task per socket."""

from __future__ import annotations

from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import TextMessage

from watchword.web.realtime.transport.frames import FrameWriter, text_frame, writer_for


def test_a_text_frame_decodes_to_the_message() -> None:
    client = WsConnection(ConnectionType.CLIENT)
    client.receive_data(text_frame('{"type":"event","data":"héllo"}'))
    events = list(client.events())
    assert len(events) == 1
    assert isinstance(events[0], TextMessage)
    assert events[0].data == '{"type":"event","data":"héllo"}'


def test_the_same_message_object_is_encoded_once() -> None:
    text = "x" * 300
    assert text_frame(text) is text_frame(text)
    other = "y" * 300
    assert text_frame(other) != text_frame(text)


def test_only_uvicorns_wsproto_send_offers_a_writer() -> None:
    async def plain_send(message: Any) -> None:
        return None

    class Lookalike:
        transport = conn = close_sent = None

        async def send(self, message: Any) -> None:
            return None

    assert writer_for(plain_send) is None
    assert writer_for(Lookalike().send) is None


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))


class _Protocol:
    def __init__(self) -> None:
        self.transport = _Transport()
        self.close_sent = False
        self.handshake_complete = True

        class _Proto:
            extensions: list[object] = []

        class _Conn:
            _proto = _Proto()

        class _WS:
            connection = _Conn()

        self.conn = _WS()


def test_a_writer_stops_writing_once_the_close_is_sent() -> None:
    protocol = _Protocol()
    writer = FrameWriter(protocol)
    assert writer.offer(b"frame", 1000) is True
    protocol.close_sent = True
    assert writer.offer(b"late", 1000) is None
    assert protocol.transport.written == [b"frame"]


def test_a_reader_behind_by_the_bound_is_refused() -> None:
    protocol = _Protocol()
    writer = FrameWriter(protocol)
    assert writer.offer(b"x" * 600, 1000) is True
    assert writer.offer(b"y" * 600, 1000) is True  # 600 unread: under the bound
    assert writer.offer(b"z", 1000) is False  # 1,200 unread
    assert len(protocol.transport.written) == 2


def test_a_compressed_connection_keeps_the_ordinary_path() -> None:
    protocol = _Protocol()
    protocol.conn.connection._proto.extensions = ["permessage-deflate"]  # type: ignore[attr-defined]
    assert FrameWriter(protocol).offer(b"frame", 1000) is None
    assert protocol.transport.written == []


def test_a_connection_before_its_handshake_keeps_the_ordinary_path() -> None:
    protocol = _Protocol()
    protocol.handshake_complete = False
    assert FrameWriter(protocol).offer(b"frame", 1000) is None
