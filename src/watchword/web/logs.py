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
import json
import logging
import logging.handlers
import re
import threading
import time
from queue import SimpleQueue
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchword.web.authn import PRINCIPAL

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
ACCESS = logging.getLogger("watchword.access")

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted before it crossed the queue (``LineQueue``)
            entry["exception"] = record.exc_text
        return json.dumps(entry, separators=(",", ":"))


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
        self._pending: list[logging.LogRecord] = []

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
        self._pending.append(record)
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
        if not isinstance(handler, logging.StreamHandler) or stream is None:
            for record in pending:
                handler.handle(record)
            return
        lines = []
        for record in pending:
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
                handler.handleError(pending[-1])


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
    if json_format:
        stream.setFormatter(JsonFormatter())
    else:
        stream.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    queue: SimpleQueue[Any] = SimpleQueue()
    _stop_writer()  # configured again in this process: one writer, the newest
    _writer = LineWriter(queue, stream)
    handler = LineQueue(queue, _writer)
    # Filtered before the queue: they read the message's template and arguments.
    handler.addFilter(_REDACTOR)
    handler.addFilter(NoSocketHandshakeLines())
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
    duration = (time.perf_counter() - started) * 1000
    # Made and handled directly, as ``ACCESS.info`` would, minus its walk up the stack for
    # the caller's file and line (always this function): one line per request adds up.
    record = ACCESS.makeRecord(
        ACCESS.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.1fms %s",
        (method, shown, status, duration, principal),
        None,
        func="log_access",
        extra={
            "access": {
                "method": method,
                "path": shown,
                "status": status,
                "duration_ms": round(duration, 2),
                "principal": principal,
            }
        },
    )
    ACCESS.handle(record)


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
    principal = scope.get(PRINCIPAL)
    method = getattr(principal, "method", None)
    if principal is None or not getattr(principal, "is_authenticated", False):
        return "anonymous"
    return str(getattr(method, "value", method))
