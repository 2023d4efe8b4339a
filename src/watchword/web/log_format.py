"""How a log line looks (text or JSON), and the access line written without a ``LogRecord``.

The access line is the one line every request writes. Made as a ``LogRecord`` and handed
through the logger, its handlers and their filters, it cost the server more than
authenticating the request. When ``serve``'s own writer is the only place it would go
(``logs.LineWriter.takes_access_lines``), it crosses to the writer as an ``AccessLine`` tuple
and the formatter below writes it as it would have written the record: one template, one
clock, for both.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

ACCESS_NAME = "watchword.access"
ACCESS_MESSAGE = "%s %s %d %.1fms %s"  # method, path?query, status, duration, principal
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# When it was made (``time.time()``), method, path with its redacted query, status,
# duration in milliseconds, principal kind.
AccessLine = tuple[float, str, str, int, float, str]


def access_fields(line: AccessLine) -> dict[str, Any]:
    """What a JSON access line adds to the message, field by field."""
    _, method, shown, status, duration, principal = line
    return {
        "method": method,
        "path": shown,
        "status": status,
        "duration_ms": round(duration, 2),
        "principal": principal,
    }


def access_record(logger: logging.Logger, line: AccessLine) -> logging.LogRecord:
    """The line as a record, for whoever else listens (a handler an app or a test added)."""
    # Made as ``logger.info`` would, minus its walk up the stack for the caller's file and
    # line (always ``log_access``).
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        0,
        ACCESS_MESSAGE,
        line[1:],
        None,
        func="log_access",
        extra={"access": access_fields(line)},
    )
    record.created = line[0]
    record.msecs = int((line[0] - int(line[0])) * 1000) + 0.0
    return record


class SecondClock:
    """``time.strftime`` of a timestamp, made once per second: the formats here show no
    fraction of a second, and a busy server writes thousands of lines in each."""

    def __init__(self, datefmt: str) -> None:
        self.datefmt = datefmt
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last  # one read: the writer thread and a stopping one may both call
        if last[0] == second:
            return last[1]
        text = time.strftime(self.datefmt, time.localtime(second))
        self._last = (second, text)
        return text


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, "%H:%M:%S")
        self._clock = SecondClock(self.datefmt or "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt not in (None, self._clock.datefmt):
            return super().formatTime(record, datefmt)
        return self._clock(record.created)

    def access_line(self, line: AccessLine) -> str:
        return TEXT_FORMAT % {
            "asctime": self._clock(line[0]),
            "levelname": "INFO",
            "name": ACCESS_NAME,
            "message": ACCESS_MESSAGE % line[1:],
        }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the access fields."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = SecondClock("%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record.created, record.levelname, record.name, record.getMessage())
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted before it crossed the queue (``logs.LineQueue``)
            entry["exception"] = record.exc_text
        return json.dumps(entry, separators=(",", ":"))

    def access_line(self, line: AccessLine) -> str:
        entry = self._entry(line[0], "INFO", ACCESS_NAME, ACCESS_MESSAGE % line[1:])
        entry.update(access_fields(line))
        return json.dumps(entry, separators=(",", ":"))

    def _entry(self, created: float, level: str, name: str, message: str) -> dict[str, Any]:
        return {
            "time": self._clock(created),
            "level": level.lower(),
            "logger": name,
            "message": message,
        }


LineFormatter = TextFormatter | JsonFormatter
