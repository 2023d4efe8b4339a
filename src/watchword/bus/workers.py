"""The bus between the worker processes of one `watchword serve --workers N`, without Redis.

On the embedded default each worker has its own caches, so a revocation made by one worker
must reach the others at once, not at the next poll of the control feed. The supervisor
process runs a ``WorkerBroker`` on a Unix socket that only its user can open; each worker's
``WorkerBus`` connects to it and every line a worker writes is relayed to every worker, the
writer included (the ``EventBus`` contract: "every node, this one included").

Same guarantee as the Redis bus: at most once, ordered per publisher. The broker greets each
worker once it is among the relay's peers, and a worker counts as linked only after that
greeting, so a message published right after ``start`` reaches every linked worker. A worker
that loses the broker reports a gap (its caches are flushed and the durable control feed
re-read) and reconnects; ``publish`` raises ``StoreUnavailable`` while it is disconnected,
so callers whose truth is the control feed log it and carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections import defaultdict
from typing import Any

from watchword.bus.base import GapHandler, Handler
from watchword.domain.errors import StoreUnavailable

log = logging.getLogger("watchword.bus")

MAX_LINE = 8 << 20  # a realtime event is bounded far below this
GREETING = b'{"linked":true}\n'  # the broker's first line: "you are among my peers now"


class WorkerBroker:
    """Relays every line from any worker to all workers. Runs in a thread of the supervisor."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="watchword-worker-bus", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the worker bus did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    @property
    def peer_count(self) -> int:
        return len(self._writers)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        old_mask = os.umask(0o177)  # the socket file: owner read/write only
        try:
            self._server = await asyncio.start_unix_server(self._relay, self.path, limit=MAX_LINE)
        finally:
            os.umask(old_mask)
        self._ready.set()
        await self._stopping.wait()
        # Closing the listener leaves accepted links open (Python 3.11): end each one, so
        # every worker sees the loss now and reports its gap.
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            writer.write(GREETING)
            while line := await reader.readline():
                for peer in list(self._writers):
                    if peer.is_closing():
                        self._writers.discard(peer)
                        continue
                    peer.write(line)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class WorkerBus:
    """One worker's link to the supervisor's broker (an ``EventBus``)."""

    def __init__(self, path: str, *, max_backoff: float = 1.0) -> None:
        self.path = path
        self._max_backoff = max_backoff
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._gap_handlers: list[GapHandler] = []
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchword-worker-bus")
            # Serve only once linked, so the first revocation already reaches every worker.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._connected.wait()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2)
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise StoreUnavailable("The worker bus is unavailable.")
        line = json.dumps({"c": channel, "m": message}, separators=(",", ":")) + "\n"
        try:
            writer.write(line.encode())
            await writer.drain()
        except ConnectionError as exc:
            raise StoreUnavailable("The worker bus is unavailable.") from exc

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def on_gap(self, handler: GapHandler) -> None:
        self._gap_handlers.append(handler)

    @property
    def healthy(self) -> bool:
        return self._connected.is_set()

    async def _run(self) -> None:
        attempt = 0
        ever_connected = False
        while not self._closed:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            except OSError as exc:
                log.debug("worker bus: cannot reach the broker (%s)", exc)
            else:
                if not await self._greeted(reader):
                    writer.close()
                    attempt += 1
                    await asyncio.sleep(min(self._max_backoff, 0.02 * 2**attempt))
                    continue
                self._writer = writer
                self._connected.set()
                attempt = 0
                if ever_connected:
                    log.warning("worker bus relinked after a loss; catching up")
                    await self._gap()
                ever_connected = True
                try:
                    while line := await reader.readline():
                        await self._deliver(line)
                except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
                    log.debug("worker bus link failed (%s)", exc)
                finally:
                    self._connected.clear()
                    self._writer = None
                    writer.close()
                if self._closed:
                    break
                log.warning("worker bus link lost")
                await self._gap()
            attempt += 1
            await asyncio.sleep(min(self._max_backoff, 0.02 * 2**attempt))

    @staticmethod
    async def _greeted(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(5):
                return await reader.readline() == GREETING
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return False

    async def _deliver(self, line: bytes) -> None:
        try:
            envelope = json.loads(line)
            channel, message = envelope["c"], envelope["m"]
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed worker bus message")
            return
        if not isinstance(channel, str) or not isinstance(message, dict):
            log.warning("dropped a malformed worker bus message")
            return
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(message)
            except Exception:
                log.exception("bus handler failed on %s", channel)

    async def _gap(self) -> None:
        for handler in self._gap_handlers:
            try:
                await handler()
            except Exception:
                log.exception("bus gap handler failed")


__all__ = ["WorkerBroker", "WorkerBus"]
