"""Run every benchmark suite (bench/suite_*.py), or the ones named: `python -m bench http`.

`--json FILE` writes every figure under stable keys (see bench/results.py). The run exits 1,
naming them, when any suite counted errors (non-2xx answers, socket errors, lost messages).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from bench import results


def main() -> None:
    names = sorted(
        m.name.removeprefix("suite_")
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("suite_")
    )
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", help=f"any of: {', '.join(names)}")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    args = parser.parse_args()
    for name in args.suites or names:
        if name not in names:
            raise SystemExit(f"unknown suite {name!r}; known: {', '.join(names)}")
        print(f"\n=== bench: {name} ===", flush=True)
        importlib.import_module(f"bench.suite_{name}").main([])
    if args.json:
        results.write_json(args.json)
        print(f"\nfigures written to {args.json}", flush=True)
    failed = results.failures()
    if failed:
        listed = ", ".join(f"{key}: {count}" for key, count in sorted(failed.items()))
        print(f"\nBENCHMARK ERRORS (figures above are not trustworthy): {listed}", flush=True)
        sys.exit(1)
    print("\nerror counts: all zero", flush=True)


if __name__ == "__main__":
    main()
