"""One socket: its identity, a bounded send queue, the client-message limits, and closing.

Sending never blocks the publisher: ``deliver`` appends to the queue and a short-lived writer
task drains it. A queue at its bound means the client reads too slowly; the connection is
then closed (``slow_consumer``) and its queue dropped, so memory stays bounded. Closing drops
whatever is queued and sends the close frame first; if even that cannot be written in time
(a peer that stopped reading), the socket's handler is told to give up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from watchword.domain.clock import monotonic
from watchword.web.realtime import closecodes
from watchword.web.realtime.closecodes import CloseCode
from watchword.web.realtime.transport.frames import FrameWriter, text_frame

log = logging.getLogger("watchword.realtime")


class Transport(Protocol):
    """What a connection needs from a socket (Starlette's ``WebSocket`` fits)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Connection:
    __slots__ = (
        "_abort",
        "_burst",
        "_close_task",
        "_frames",
        "_queue",
        "_queued",
        "_rate",
        "_tokens",
        "_tokens_at",
        "_transport",
        "_writer",
        "awaiting_pong_since",
        "carried_scopes",
        "channels",
        "close_code",
        "close_reason",
        "close_timeout",
        "connected_at",
        "credential",
        "device",
        "expires_at",
        "id",
        "ip",
        "last_received",
        "last_touch",
        "method",
        "queue_limit",
        "refresh_sent",
        "scopes",
        "session_id",
        "user_id",
    )

    def __init__(
        self,
        *,
        id: str,
        transport: Transport,
        user_id: str,
        session_id: str | None,
        scopes: frozenset[str],
        method: str,
        expires_at: datetime | None,
        device: str,
        ip: str | None,
        connected_at: datetime,
        queue_limit: int,
        rate: float,
        burst: int,
        close_timeout: float,
        abort: Callable[[], None] | None = None,
        frames: FrameWriter | None = None,
        credential: str | None = None,
    ) -> None:
        self.id = id
        # What opened the socket besides its session ("api_key:<id>", "jti:<jti>"...): its
        # revocation closes the socket. ``carried_scopes`` is what that credential was given;
        # ``scopes`` is that within what the owner's roles grant now.
        self.credential = credential
        self.carried_scopes = scopes
        self._transport = transport
        self.user_id = user_id
        self.session_id = session_id
        self.scopes = scopes
        self.method = method
        self.expires_at = expires_at
        self.device = device
        self.ip = ip
        self.connected_at = connected_at
        self.queue_limit = queue_limit
        self.close_timeout = close_timeout
        self.channels: set[str] = set()
        self._queue: list[str] = []
        self._queued = 0
        self._writer: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._abort = abort
        self._frames = frames
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        now = monotonic()
        self._tokens_at = now
        self.last_received = now
        self.last_touch = now
        self.awaiting_pong_since: float | None = None
        self.refresh_sent = False
        self.close_code: CloseCode | None = None
        self.close_reason: str | None = None

    # -- sending --------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def abort_hook(self) -> Callable[[], None] | None:
        """What is called when even the close frame cannot be written in time."""
        return self._abort

    @property
    def queued(self) -> int:
        """Messages accepted but not yet written to the socket."""
        return self._queued

    def deliver(self, text: str) -> bool:
        """Queue ``text``; ``False`` when the connection is closing or was just cut off."""
        if self.close_code is not None:
            return False
        frames = self._frames
        if frames is not None and self._writer is None:
            # The fast path: no task, the frame shared with every other socket of the publish.
            # Unread bytes worth the queue's bound of such messages (4 KiB each at least, so
            # one large message does not make the next small one look late): too slow.
            frame = text_frame(text)
            written = frames.offer(frame, self.queue_limit * max(len(frame), 4096))
            if written is not None:
                if not written:
                    self.close(closecodes.SLOW_CONSUMER, f"more than {self.queue_limit} queued")
                return written
        if self._queued >= self.queue_limit:
            self.close(closecodes.SLOW_CONSUMER, f"more than {self.queue_limit} queued")
            return False
        self._queue.append(text)
        self._queued += 1
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return True

    async def _drain(self) -> None:
        try:
            while self._queue and self.close_code is None:
                batch, self._queue = self._queue, []
                for text in batch:
                    if self.close_code is not None:
                        return
                    await self._transport.send_text(text)
                    self._queued -= 1
        except asyncio.CancelledError:
            raise
        except Exception:
            # The peer is gone; the handler's receive loop sees the disconnect.
            self._queue = []
            self._queued = 0
        finally:
            self._writer = None

    # -- receiving limits -----------------------------------------------------------------

    def received(self, now: float | None = None) -> bool:
        """Count one client message: ``False`` when over the rate (token bucket)."""
        now = monotonic() if now is None else now
        self.last_received = now
        self.awaiting_pong_since = None
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # -- closing --------------------------------------------------------------------------

    def close(self, code: CloseCode, detail: str | None = None) -> None:
        """Close with ``code`` (once; later calls are ignored). Queued messages are dropped."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = code.reason(detail)
        self._queue = []
        self._queued = 0
        self._close_task = asyncio.get_running_loop().create_task(self._send_close())

    async def _send_close(self) -> None:
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            # A writer blocked on a full socket would hold the close frame back: stop it.
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        assert self.close_code is not None
        try:
            await asyncio.wait_for(
                self._transport.close(self.close_code.code, self.close_reason),
                self.close_timeout,
            )
        except TimeoutError:
            log.info("connection %s: close frame not written in time; dropping it", self.id)
            if self._abort is not None:
                self._abort()
        except Exception:
            # Already disconnected: nothing left to tell the peer.
            log.debug("connection %s: close after disconnect", self.id)

    def mark_disconnected(self) -> None:
        """The peer went away: stop writing, remember nothing."""
        if self.close_code is None:
            self.close_code = closecodes.PEER_GONE
            self.close_reason = closecodes.PEER_GONE.name
        self._queue = []
        self._queued = 0
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()

    async def wait_closed(self) -> None:
        """Wait until the close frame went out (or could not); at once if never closing."""
        task = self._close_task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)


__all__ = ["Connection", "Transport"]
