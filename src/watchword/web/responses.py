"""A JSON response rendered by orjson: the hot routes answer several times faster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response


class FastJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class HotJSONResponse(Response):
    """A 200 answer for the hot reads: a body already encoded as JSON, with its header lines
    already encoded (``json_headers``, kept with the body it describes).

    Starlette's ``Response.__init__`` lower-cases and encodes every header on every answer;
    this one sets what ``__call__`` sends: status, raw headers, body, no background task.
    """

    media_type = "application/json"

    def __init__(self, body: bytes, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = list(raw_headers)  # its own list: a layer may add to it


def json_headers(
    body: bytes, extra: Sequence[tuple[bytes, bytes]]
) -> tuple[tuple[bytes, bytes], ...]:
    """A JSON body's header lines, encoded, then ``extra``."""
    return (
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", b"application/json"),
        *extra,
    )


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
