"""Run every benchmark suite (bench/suite_*.py), or the ones named: `python -m bench http`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    wanted = sys.argv[1:]
    names = sorted(
        m.name.removeprefix("suite_")
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("suite_")
    )
    for name in wanted or names:
        if name not in names:
            raise SystemExit(f"unknown suite {name!r}; known: {', '.join(names)}")
        print(f"\n=== bench: {name} ===", flush=True)
        importlib.import_module(f"bench.suite_{name}").main([])


if __name__ == "__main__":
    main()
