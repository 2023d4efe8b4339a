"""The Python example in docs/realtime.md runs as written against a real server."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import PASSWORD
from tests.realtime.conftest import Server
from tests.realtime.helpers import admin, publish, register, sign_in

DOC = Path(__file__).resolve().parents[2] / "docs" / "realtime.md"

pytestmark = pytest.mark.e2e


def example_code() -> str:
    text = DOC.read_text()
    section = text[text.index("### Example") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_the_documented_example_prints_the_events(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example_code())
    email = await register(server)
    user = await sign_in(server, email)
    boss = await admin(server)
    env = {
        **server.env,
        "WATCHWORD_URL": server.http,
        "WATCHWORD_EMAIL": email,
        "WATCHWORD_PASSWORD": PASSWORD,
        "EVENTS": "2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 60)
    assert first.decode().strip() == f"connected as {user.user_id}"
    # Connected: now the events reach it.
    for n in range(2):
        response = await publish(boss, user_id=user.user_id, event="order.shipped", data=n)
        assert response.status_code == 202
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert [line for line in lines if line.startswith("order.shipped")] == [
        "order.shipped 0",
        "order.shipped 1",
    ]
