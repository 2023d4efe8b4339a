"""The examples the docs mark runnable run as written against a live ``watchword serve``.

A fenced ``sh`` or ``python`` block is runnable when the line just before its fence is
``<!-- runnable -->``; other blocks are illustrative. Each document gets one server and one
working directory, and its blocks run in document order, so a tour's cookie jar carries from
step to step, and so do the variables a shell block exports. The documented base URL
(``http://127.0.0.1:8000``, ``localhost:8000``, ``ws://127.0.0.1:8000``) is rewritten to the
test server's; ``WATCHWORD_URL`` names it too. In shell blocks ``curl`` fails on an HTTP error
status (``--fail-with-body``), so a step that silently got a 401 does not pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"^```(\w*)\s*$")
LANGUAGES = {"sh", "bash", "python"}
BLOCK_TIMEOUT = 120
CURL_FAILS = 'curl() { command curl --fail-with-body "$@"; }'


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line} ({self.language})"


def runnable_blocks(document: Path) -> list[Block]:
    """Every marked block of ``document``, in order. A marker not followed by a fence of a
    runnable language is an error, so a typo cannot silently turn a test off."""
    lines = document.read_text().splitlines()
    blocks: list[Block] = []
    inside = False
    for number, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence is not None:
            inside = not inside
        if line.strip() != MARKER or inside:
            continue
        opening = FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
        if opening is None or opening.group(1) not in LANGUAGES:
            raise AssertionError(
                f"{document.relative_to(ROOT)}:{number + 1}: {MARKER} must come just before "
                f"a ```sh or ```python fence"
            )
        end = number + 2
        while not lines[end].startswith("```"):
            end += 1
        code = "\n".join(lines[number + 2 : end]) + "\n"
        blocks.append(Block(document, number + 2, opening.group(1), code))
    return blocks


def rewrite(code: str, base: str) -> str:
    host = base.removeprefix("http://")
    code = code.replace("http://127.0.0.1:8000", base)
    code = code.replace("ws://127.0.0.1:8000", "ws://" + host)
    return re.sub(r"(?<![\w/.])localhost:8000", host, code)


@dataclass
class DocServer:
    base: str
    env: dict[str, str]
    workdir: Path


@pytest.fixture
def doc_server(tmp_path: Path) -> Iterator[DocServer]:
    state = tmp_path / "server"
    state.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHWORD_")}
    env.update(
        {
            "PATH": str(Path(WATCHWORD).parent) + os.pathsep + env.get("PATH", ""),
            "WATCHWORD_SECRET_KEY": TEST_SECRET_KEY,
            "WATCHWORD_DATABASE_URL": f"sqlite+aiosqlite:///{state}/watchword.db",
            "WATCHWORD_LOGIN_RATE_LIMIT_IP": "100000/minute",
            "WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
            "WATCHWORD_CONTROL_POLL_INTERVAL": "0.2",
        }
    )
    log_path = state / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [WATCHWORD, "serve", "--port", str(port)],
            cwd=state,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base, output=lambda: log_path.read_text(errors="replace"))
        yield DocServer(base, {**env, "WATCHWORD_URL": base}, workdir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_block(block: Block, server: DocServer, env_file: Path) -> dict[str, str]:
    """Run one block; answer the environment the next block starts with."""
    code = rewrite(block.code, server.base)
    if ":8000" in code or "watchword serve" in code:
        pytest.fail(
            f"{block.name} starts or names a server of its own: runnable blocks use the running "
            f"one, at http://127.0.0.1:8000 or $WATCHWORD_URL",
            pytrace=False,
        )
    if block.language == "python":
        command = [sys.executable, "-c", code]
    else:
        # An HTTP error status fails the step (a step that expects one says `|| true`), and
        # the exported variables outlive the block, as in a reader's terminal.
        script = f"{CURL_FAILS}\n{code}\nenv -0 > {env_file}\n"
        command = ["bash", "-euo", "pipefail", "-c", script]
    env_file.unlink(missing_ok=True)
    result = subprocess.run(
        command,
        cwd=server.workdir,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{block.name} failed with exit status {result.returncode}:\n{code}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    if block.language == "python" or not env_file.exists():
        return server.env
    pairs = (item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
    return {key: value for key, value in pairs if not key.startswith("BASH_FUNC_")}


DOCUMENTS_WITH_BLOCKS = [doc for doc in DOCUMENTS if runnable_blocks(doc)]


def test_every_marker_precedes_a_runnable_fence() -> None:
    for document in DOCUMENTS:
        runnable_blocks(document)  # raises on a misplaced marker
    assert DOCUMENTS_WITH_BLOCKS, "no document marks a runnable block"


@pytest.mark.parametrize("document", DOCUMENTS_WITH_BLOCKS, ids=lambda doc: doc.name)
def test_runnable_blocks_run_as_written(document: Path, doc_server: DocServer) -> None:
    env_file = doc_server.workdir.parent / "exported.env"
    for block in runnable_blocks(document):
        doc_server.env = run_block(block, doc_server, env_file)
