"""The access line as ``serve`` writes it: straight to its writer thread, without a
``LogRecord``, exactly as the record would have been written, redacted; and as a record again
for anyone else who listens (a handler, a filter)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

import pytest

from tests.foundation.test_event_loop_never_waits import (
    ThreadNotingStream,
    configure_logs,  # noqa: F401 (a fixture)
    held_logs,
)
from watchword.web import logs
from watchword.web.log_format import TextFormatter


def written(stream: ThreadNotingStream) -> list[str]:
    """Every line, once everything queued before this call is written."""
    logging.getLogger("watchword.test").warning("written")  # returns once written
    return [line for line in stream.getvalue().splitlines() if "written" not in line]


def no_clock(line: str) -> str:
    """The line without its time of day and its duration (the two ways ran at other times)."""
    line = re.sub(r'^\d\d:\d\d:\d\d |"time":"[^"]*",', "", line)
    return re.sub(r' [\d.]+ms |"duration_ms":[\d.]+', " ", line)


@pytest.fixture
def records_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the access lines made as a ``LogRecord`` from now on."""
    made: list[str] = []
    real = logs.access_record

    def noting(logger: logging.Logger, line: logs.AccessLine) -> logging.LogRecord:
        made.append(line[2])
        return real(logger, line)

    monkeypatch.setattr(logs, "access_record", noting)
    return made


class Listening(logging.Handler):
    """A handler an app adds: keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.heard.append(record)


REQUESTS = [
    ("GET", "/v1/me", "", 200, "bearer_jwt"),
    ("GET", "/v1/realtime", "ticket=wwt_secret&x=1", 101, "user"),
    ("POST", "/v1/x?access_token=from-a-decoded-path", "", 404, "anonymous"),
]


def log_requests(stream: ThreadNotingStream) -> list[str]:
    stream.truncate(0)
    stream.seek(0)
    for method, path, query, status, principal in REQUESTS:
        logs.log_access(method, path, query, status, 0.0, principal)
    return written(stream)


@pytest.mark.parametrize("json_format", [False, True])
def test_serves_access_lines_skip_the_record_and_read_as_the_record_would(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    records_made: list[str],
    json_format: bool,
) -> None:
    stream = configure_logs(json_format=json_format)
    logs.log_access("GET", "/v1/me", "", 200, 0.0, "bearer_jwt")
    assert written(stream) and records_made == []  # written, and no record was made for it
    direct = log_requests(stream)
    # A filter on the access logger that keeps everything: the lines go as records.
    monkeypatch.setattr(logs.ACCESS, "filters", [lambda record: True])
    as_records = log_requests(stream)
    assert len(direct) == len(as_records) == 3
    assert [no_clock(line) for line in direct] == [no_clock(line) for line in as_records]
    assert len(records_made) == 3  # records only the second time
    text = "\n".join(direct)
    assert "wwt_secret" not in text and "from-a-decoded-path" not in text
    if json_format:
        entry = json.loads(direct[1])
        assert entry["path"] == "/v1/realtime?ticket=[redacted]&x=1"
        assert (entry["level"], entry["logger"], entry["status"]) == (
            "info",
            "watchword.access",
            101,
        )
    else:
        assert " INFO watchword.access: GET /v1/realtime?ticket=[redacted]&x=1 101 " in direct[1]


def test_a_filter_on_the_access_logger_still_decides(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = configure_logs()
    monkeypatch.setattr(
        logs.ACCESS, "filters", [lambda record: "/hidden" not in record.getMessage()]
    )
    for path in ("/shown", "/hidden"):
        logs.log_access("GET", path, "", 200, 0.0, "anonymous")
    text = "\n".join(written(stream))
    assert "/shown" in text and "/hidden" not in text


def test_a_handler_an_app_adds_gets_every_access_record(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
) -> None:
    stream = configure_logs()
    listening = Listening()
    logging.getLogger("watchword").addHandler(listening)
    try:
        logs.log_access("GET", "/v1/realtime", "ticket=wwt_secret", 101, 0.0, "user")
    finally:
        logging.getLogger("watchword").removeHandler(listening)
    assert [r.getMessage().split()[:3] for r in listening.heard] == [
        ["GET", "/v1/realtime?ticket=[redacted]", "101"]
    ]
    assert listening.heard[0].access["principal"] == "user"  # type: ignore[attr-defined]
    assert "GET /v1/realtime?ticket=[redacted] 101" in "\n".join(written(stream))


def test_a_stopped_writer_takes_records_again(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
    records_made: list[str],
) -> None:
    configure_logs()
    assert logs._writer is not None and logs._writer.takes_access_lines()
    logs._stop_writer()
    logs.log_access("GET", "/after-stop", "", 200, 0.0, "anonymous")
    assert records_made == ["/after-stop"]


def test_logging_configured_again_by_an_app_gets_the_access_records(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logs()
    listening = Listening()
    # The writer still runs, but the root logger's handler is now the app's own.
    monkeypatch.setattr(logging.getLogger(), "handlers", [listening])
    logs.log_access("GET", "/v1/me", "", 200, 0.0, "bearer_jwt")
    assert [r.getMessage().split()[:3] for r in listening.heard] == [["GET", "/v1/me", "200"]]


def test_no_handler_left_means_no_access_line(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = configure_logs()
    assert logs._writer is not None
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # an app removed them all
    logs.log_access("GET", "/unheard", "", 200, 0.0, "anonymous")
    monkeypatch.undo()
    assert not any("/unheard" in line for line in written(stream))


def test_the_text_formatters_clock_keeps_other_date_formats() -> None:
    record = logging.makeLogRecord({"msg": "x", "created": 1767268800.5})  # 2026-01-01 12:00 UTC
    formatter = TextFormatter()
    assert formatter.formatTime(record, "%Y") == time.strftime("%Y", time.localtime(1767268800))
    assert formatter.formatTime(record) == time.strftime("%H:%M:%S", time.localtime(1767268800))


def test_a_filter_added_while_lines_wait_still_reads_them(
    configure_logs: Callable[..., ThreadNotingStream],  # noqa: F811
) -> None:
    stream = held_logs(configure_logs)  # the writer is held in its first write
    for path in ("/shown", "/hidden"):
        logs.log_access("GET", path, "", 200, 0.0, "anonymous")  # queued as lines
    (handler,) = logs._writer.handlers  # type: ignore[union-attr]
    handler.addFilter(lambda record: "/hidden" not in record.getMessage())
    stream.release.set()
    text = "\n".join(written(stream))
    assert "/shown" in text and "/hidden" not in text
