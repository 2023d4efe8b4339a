"""Benchmarks: `python -m bench` runs every suite; `python -m bench.suite_http` runs one."""
