"""Instructions per request, counted by valgrind's callgrind: a figure a busy host cannot move.

On these machines a server's CPU time per request moves with what the neighbours do (the same
/healthz measured 51 to 100 us within minutes); the count of instructions it executes does
not. The server runs under callgrind with instrumentation off while it starts. For each
scenario it is warmed with wrk, its counters are zeroed, wrk -c64 loads it for a fixed time,
and its counters are dumped: instructions / requests answered. User-space only: the kernel's
share (the sockets) and cache misses are not in it. The figure steers changes to the Python
code; the wrk tables say what a request costs.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import LoadResult, Server, wrk

CALLGRIND = [
    "valgrind",
    "--tool=callgrind",
    "--instr-atstart=no",  # start-up runs at near native speed; counting starts below
]


def unavailable() -> str | None:
    """Why instructions cannot be counted here, or None."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found (Debian's valgrind)" if missing else None


@dataclass(frozen=True)
class Counted:
    load: LoadResult
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.load.requests if self.load.requests else float("inf")


class CountingServer(Server):
    """``Server`` under callgrind; ``count`` loads it and reads what it executed."""

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        self.dumps = Path(self.workdir) / "callgrind"
        self.dumps.mkdir()
        self.wrapper = [*CALLGRIND, f"--callgrind-out-file={self.dumps}/out"]
        # Valgrind translates every instruction even while it counts none: start-up took 53 s
        # on a slow host, where the usual 60 s deadline failed the whole run.
        self.ready_within = 300.0

    def start(self) -> CountingServer:
        super().start()
        self._control("--instr=on")
        return self

    def count(self, path: str, headers: dict[str, str], seconds: float) -> Counted:
        url = self.url + path
        # Under callgrind a request takes ~50 times as long: wrk must wait for it.
        wrk(url, headers=headers, duration=seconds / 2, connections=64, timeout=30)
        before = set(self.dumps.iterdir())
        self._control("--zero")
        load = wrk(url, headers=headers, duration=seconds, connections=64, timeout=30)
        self._control("--dump")
        (dump,) = set(self.dumps.iterdir()) - before
        return Counted(load, _totals(dump))

    def _control(self, option: str) -> None:
        assert self.process is not None
        subprocess.run(
            ["callgrind_control", option, str(self.process.pid)],
            capture_output=True,
            timeout=120,
            check=True,
        )


def _totals(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")
