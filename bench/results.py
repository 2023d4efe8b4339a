"""Every figure a suite prints, under a stable key, and every error count it saw.

Suites call ``record`` beside each printed row and ``count_errors`` for every non-2xx answer,
socket error or lost message; ``python -m bench --json FILE`` writes the figures, and the run
fails loudly (exit 1, the counts named) when any error count is not zero.
"""

from __future__ import annotations

import json
from pathlib import Path

FIGURES: dict[str, float] = {}
ERRORS: dict[str, int] = {}


def record(key: str, value: float) -> float:
    FIGURES[key] = round(float(value), 4)
    return value


def count_errors(key: str, count: int) -> None:
    ERRORS[key] = ERRORS.get(key, 0) + int(count)


def write_json(path: str) -> None:
    Path(path).write_text(json.dumps({"figures": FIGURES, "errors": ERRORS}, indent=2) + "\n")


def failures() -> dict[str, int]:
    return {key: count for key, count in ERRORS.items() if count}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; refuses fewer than 100 samples for p99 (it would be the max)."""
    if pct >= 99 and len(values) < 100:
        raise ValueError(f"a p{pct:g} needs at least 100 samples, got {len(values)}")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
