"""What the server logs: one access line per request, and never a secret.

Credentials travel in query strings more often than they should (a socket's `?ticket=` or
`?access_token=`, a mistyped client sending `?api_key=`), and a log is read by more people
than the credentials were meant for. Every query parameter whose name (decoded, any case) is
credential-bearing has its value replaced before any line is written, by a filter on every
handler, whoever logs (Watchword, uvicorn, a library).

The access line is Watchword's own (uvicorn's is off): method, path with its redacted query,
status, duration and the kind of principal, at info on ``watchword.access``; a socket gets its
line only once its authentication succeeded (the gateway logs it), not at the handshake.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import logging.handlers
import re
import threading
import time
from queue import SimpleQueue
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchword.domain.principal import Principal
from watchword.web.authn import PRINCIPAL
from watchword.web.log_format import (
    ACCESS_NAME,
    AccessLine,
    JsonFormatter,
    LineFormatter,
    TextFormatter,
    access_record,
)

SECRET_NAMES = frozenset(
    {
        "access_token",
        "refresh_token",
        "ticket",
        "token",
        "api_key",
        "key",
        "password",
        "code",
        "client_secret",
        "id_token_hint",
    }
)
REDACTED = "[redacted]"
ACCESS = logging.getLogger(ACCESS_NAME)

_QUERY = re.compile(r"\?[^\s\"'<>]*")


def redact_query(query: str) -> str:
    """``query`` (without the ``?``) with every credential-bearing value replaced."""
    parts = []
    for pair in re.split(r"([&;])", query):
        if pair in ("&", ";"):
            parts.append(pair)
            continue
        name, sep, _ = pair.partition("=")
        if sep and unquote_plus(name).strip().lower() in SECRET_NAMES:
            parts.append(f"{name}={REDACTED}")
        else:
            parts.append(pair)
    return "".join(parts)


def redact_text(text: str) -> str:
    """Every query string inside ``text`` (a log message, a URL) redacted."""
    if "?" not in text:
        return text
    return _QUERY.sub(lambda m: "?" + redact_query(m.group(0)[1:]), text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact_text(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


class NoSocketHandshakeLines(logging.Filter):
    """uvicorn logs a socket as "accepted" at the handshake, before the gateway has
    authenticated it: the gateway logs it itself once it has."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and '"WebSocket %s"' in record.msg)


_REDACTOR = RedactSecrets()


class _Written:
    """Queued after a record that must be written before its caller goes on: the writer
    answers it once everything before it is written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class LineWriter(logging.handlers.QueueListener):
    """The thread that writes queued log lines to the real handler, many to a write.

    Under load the lines arrive faster than one write each: every line the queue already
    holds joins the same write (up to ``BATCH``), and a batch is written as soon as the
    queue is empty, so a quiet server's line is written at once.
    """

    BATCH = 512

    def __init__(self, queue: SimpleQueue[Any], handler: logging.Handler) -> None:
        super().__init__(queue, handler)
        self.lines = queue  # ``self.queue``, typed as the SimpleQueue it is (``empty()``)
        self.running = False
        self.front: logging.Handler | None = None  # the ``LineQueue`` feeding this writer
        self._front_filters: list[Any] = []
        self._pending: list[logging.LogRecord | AccessLine] = []

    def feed_from(self, front: logging.Handler) -> None:
        self.front = front
        self._front_filters = list(front.filters)

    def takes_access_lines(self) -> bool:
        """Whether an access line may come as an ``AccessLine``: the record would reach no
        handler but ``front``, through no filter but the redaction ``log_access`` already
        did, to this writer's stream and formatter. Anything added since ``configure`` (a
        handler by an app, caplog by a test, a filter) gets the record again."""
        front = self.front
        if not self.running or front is None or ACCESS.filters or ACCESS.disabled:
            return False
        (handler,) = self.handlers
        if (
            front.filters != self._front_filters
            or handler.filters
            or front.level > logging.INFO
            or handler.level > logging.INFO
            or not isinstance(handler.formatter, LineFormatter)
            or not isinstance(handler, logging.StreamHandler)
        ):
            return False
        logger: logging.Logger | None = ACCESS
        reached = 0
        while logger is not None:  # as ``Logger.callHandlers`` walks
            for listening in logger.handlers:
                if listening is not front:
                    return False
                reached += 1
            logger = logger.parent if logger.propagate else None
        return reached == 1

    def start(self) -> None:
        super().start()
        self.running = True

    def stop(self) -> None:
        self.running = False
        super().stop()
        self.write_pending()  # what the thread held when the stop reached it

    def handle(self, record: Any) -> None:
        if isinstance(record, _Written):
            self.write_pending()
            record.done.set()
            return
        self._pending.append(record)  # a LogRecord, or an AccessLine
        if len(self._pending) >= self.BATCH or self.lines.empty():
            self.write_pending()

    def write_now(self, record: logging.LogRecord) -> None:
        """Write ``record`` here, after anything pending (the writer is stopped)."""
        self._pending.append(record)
        self.write_pending()

    def write_pending(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        (handler,) = self.handlers
        stream = getattr(handler, "stream", None)
        formatter = handler.formatter
        if not isinstance(handler, logging.StreamHandler) or stream is None:
            for item in pending:
                handler.handle(self._record(item))
            return
        lines = []
        for item in pending:
            # A filter added since the line was queued reads it as a record.
            if (
                isinstance(item, tuple)
                and isinstance(formatter, LineFormatter)
                and not handler.filters
            ):
                lines.append(formatter.access_line(item) + handler.terminator)
                continue
            record = self._record(item)
            if not handler.filter(record):  # as ``handler.handle`` would
                continue
            try:
                lines.append(handler.format(record) + handler.terminator)
            except Exception:
                handler.handleError(record)
        with handler.lock or contextlib.nullcontext():
            try:
                stream.write("".join(lines))
                stream.flush()
            except Exception:
                handler.handleError(self._record(pending[-1]))

    @staticmethod
    def _record(item: logging.LogRecord | AccessLine) -> logging.LogRecord:
        return access_record(ACCESS, item) if isinstance(item, tuple) else item


class LineQueue(logging.handlers.QueueHandler):
    """Hands access lines to the writer thread: the event loop never waits on their write.

    A write to a file or a pipe can block: behind a reader that fell behind, or, on a file,
    behind the filesystem's journal while SQLite syncs a commit (a login storm made the loop
    wait tens of milliseconds in ``write``, every request of every client with it). The record
    crosses with its message and any traceback already made into text (its arguments and
    exception objects may not outlive the call), and keeps its other fields for the
    formatter on the other side.

    Every other line (start, stop, warnings, errors: few, and some the last a process says
    before a signal ends it without running exit handlers) is written before ``emit``
    returns, after whatever was queued before it.
    """

    def __init__(self, queue: SimpleQueue[Any], writer: LineWriter) -> None:
        super().__init__(queue)
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.name != ACCESS.name:  # an access record is ``log_access``'s own, used once
            record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def emit(self, record: logging.LogRecord) -> None:
        if not self.writer.running:  # stopped (at exit): write it here
            self.writer.write_now(self.prepare(record))
            return
        super().emit(record)
        if record.name != ACCESS.name:
            written = _Written()
            self.queue.put_nowait(written)
            written.done.wait(WRITE_WAIT)


WRITE_WAIT = 5.0  # seconds a non-access line waits for the writer (a stuck write: go on)
_writer: LineWriter | None = None


@atexit.register
def _stop_writer() -> None:
    """Write what is queued and end the writer thread (at exit, or when configured again)."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def configure(*, level: str = "info", json_format: bool = False, access: bool = True) -> None:
    """Logging for ``watchword serve``: one handler on the root logger, redacted, and
    uvicorn's loggers sent through it, written by a thread of its own (``LineQueue``);
    ``access=False`` silences the access lines."""
    global _writer
    stream = logging.StreamHandler()
    stream.setFormatter(JsonFormatter() if json_format else TextFormatter())
    queue: SimpleQueue[Any] = SimpleQueue()
    _stop_writer()  # configured again in this process: one writer, the newest
    _writer = LineWriter(queue, stream)
    handler = LineQueue(queue, _writer)
    # Filtered before the queue: they read the message's template and arguments.
    handler.addFilter(_REDACTOR)
    handler.addFilter(NoSocketHandshakeLines())
    _writer.feed_from(handler)
    _writer.start()
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # uvicorn writes its access line whenever this logger has a handler, its own included:
    # none, and no propagation, so the one access line is Watchword's (redacted).
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = []
    uvicorn_access.propagate = False
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ACCESS.setLevel(logging.NOTSET if access else logging.WARNING)


def install_redaction() -> None:
    """For apps not started by ``serve`` (tests, embedding): redact on every existing handler
    and on the loggers that print URLs."""
    for logger in (logging.getLogger(), *map(logging.getLogger, ("uvicorn", "uvicorn.error"))):
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)
        for handler in logger.handlers:
            if _REDACTOR not in handler.filters:
                handler.addFilter(_REDACTOR)


def log_access(
    method: str, path: str, query: str, status: int, started: float, principal: str
) -> None:
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    shown = f"{path}?{redact_query(query)}" if query else path
    # As ``RedactSecrets`` would redact the record's arguments: a decoded path may hold a "?".
    line = (
        time.time(),
        method,
        redact_text(shown),
        status,
        (time.perf_counter() - started) * 1000,
        principal,
    )
    writer = _writer
    if writer is not None and writer.takes_access_lines():
        writer.lines.put_nowait(line)  # no LogRecord, no handler: the writer formats it
        return
    ACCESS.handle(access_record(ACCESS, line))


class AccessLogMiddleware:
    """One line per HTTP request, after its answer started (sockets: see the gateway)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ACCESS.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            log_access(
                scope["method"],
                scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
                status,
                started,
                principal_kind(scope),
            )


def principal_kind(scope: Scope) -> str:
    principal: Principal | None = scope.get(PRINCIPAL)
    if principal is None or not principal.is_authenticated:
        return "anonymous"
    return str(principal.method)  # a StrEnum: its value, without the enum's descriptor
