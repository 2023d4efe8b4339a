"""What the commands print: JSON with ``--json``, otherwise tables that fit 100 columns.

A cell too long for its column is cut with an ellipsis; ``--wide`` prints every column in
full. Times are shown to the second, in UTC, as ``2026-01-01 12:00:00``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 100
GAP = "  "
ELLIPSIS = "…"
# Columns an operator copies into the next command: never cut.
WHOLE_COLUMNS = frozenset({"id", "key_id", "client_id", "kid", "email"})
_ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(\+00:00|Z)?$")


class CliError(Exception):
    """A one-line error for the operator; exit status 1."""


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return str(value.get("label") or json.dumps(value, default=str))
    text = str(value)
    match = _ISO_TIME.match(text)
    if match and match.group(4):
        return f"{match.group(1)} {match.group(2)}"
    # One row is one line, whatever a value holds.
    return text.replace("\r", " ").replace("\n", " ")


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


class Table:
    """Column widths fixed once (from the header, the first rows and ``least``), so rows
    printed later, as ``audit tail -f`` does, stay aligned with the header."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]] = (),
        *,
        wide: bool = False,
        least: Mapping[str, int] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.wide = wide
        cells = [[cell(row.get(col)) for col in self.columns] for row in rows]
        least = least or {}
        self.widths = [
            max(len(col), least.get(col, 0), *(len(r[i]) for r in cells))
            for i, col in enumerate(self.columns)
        ]
        if not wide:
            self._fit()

    def _fit(self) -> None:
        """Narrow the widest cuttable column, one character at a time, until the row fits."""
        floor = [
            self.widths[i] if col in WHOLE_COLUMNS else min(self.widths[i], max(len(col), 6))
            for i, col in enumerate(self.columns)
        ]
        while sum(self.widths) + len(GAP) * (len(self.columns) - 1) > WIDTH:
            candidates = [i for i, w in enumerate(self.widths) if w > floor[i]]
            if not candidates:
                return
            widest = max(candidates, key=lambda i: self.widths[i])
            self.widths[widest] -= 1

    def header(self) -> str:
        return self._line([col.upper() for col in self.columns])

    def row(self, row: Mapping[str, Any]) -> str:
        return self._line([cell(row.get(col)) for col in self.columns])

    def _line(self, cells: Sequence[str]) -> str:
        if self.wide:
            parts = [c.ljust(w) for c, w in zip(cells, self.widths, strict=True)]
        else:
            parts = [cut(c, w).ljust(w) for c, w in zip(cells, self.widths, strict=True)]
        return GAP.join(parts).rstrip()


def emit(
    args: argparse.Namespace,
    data: Any,
    columns: Sequence[str] | None = None,
    wide_columns: Sequence[str] | None = None,
) -> None:
    """Print ``data``: JSON, or a table of ``columns`` (``wide_columns`` with ``--wide``)."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
        return
    if columns is None or not isinstance(data, (list, dict)):
        print(data)
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        print("(none)")
        return
    wide = bool(getattr(args, "wide", False))
    table = Table((wide_columns or columns) if wide else columns, rows, wide=wide)
    print(table.header())
    for row in rows:
        print(table.row(row))
