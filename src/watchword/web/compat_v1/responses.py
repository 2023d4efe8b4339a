"""What Flask and Werkzeug answer, byte for byte where clients can tell.

JSON as current Flask prints it (keys sorted, compact, a trailing newline); the three JSON
error bodies of the exercise's handlers; Werkzeug's HTML pages where the exercise has no
handler (405, 413, 500).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.responses import Response

ERRORS = {401: "Unauthorized", 403: "Forbidden", 404: "Not found"}

_WERKZEUG = {
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
    413: (
        "Request Entity Too Large",
        "The data value transmitted exceeds the capacity limit.",
    ),
    500: (
        "Internal Server Error",
        "The server encountered an internal error and was unable to complete your request."
        " Either the server is overloaded or there is an error in the application.",
    ),
}


def jsonify(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error(status: int) -> Response:
    """The exercise's error handlers: 401, 403 and 404 as ``{"error": ...}``."""
    return jsonify({"error": ERRORS[status]}, status)


def message(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return jsonify({"error": text}, status, headers)


def werkzeug_page(status: int, headers: dict[str, str] | None = None) -> Response:
    name, description = _WERKZEUG[status]
    body = (
        "<!doctype html>\n"
        "<html lang=en>\n"
        f"<title>{status} {escape(name)}</title>\n"
        f"<h1>{escape(name)}</h1>\n"
        f"<p>{escape(description)}</p>\n"
    )
    return Response(body, status_code=status, media_type="text/html", headers=headers)
