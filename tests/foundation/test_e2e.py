"""End to end: a real ``watchword serve`` process, a browser-like cookie jar, a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.foundation.procs import Server, cli_env
from tests.foundation.test_cli import wait_ready
from tests.helpers import PASSWORD


@pytest.mark.e2e
async def test_a_session_survives_a_restart_of_the_server(tmp_path: Path) -> None:
    # The embedded default: a SQLite file in the working directory, migrated by `serve`,
    # and the master key generated into a file beside it on first start.
    env = cli_env("sqlite+aiosqlite:///./watchword.db")
    del env["WATCHWORD_SECRET_KEY"]
    first = Server(env, tmp_path)
    await first.start()
    assert (tmp_path / "watchword.db").exists() and (tmp_path / "watchword.secret").exists()
    assert any(f"http://127.0.0.1:{first.port}" in line for line in first.output)
    jar = httpx.Cookies()
    try:
        async with httpx.AsyncClient(base_url=first.base_url, cookies=jar, timeout=10) as browser:
            await wait_ready(browser)
            registered = await browser.post(
                "/v1/users", json={"email": "alice@example.com", "password": PASSWORD}
            )
            assert registered.status_code == 201, registered.text
            login = await browser.post(
                "/v1/auth/login",
                json={"email": "alice@example.com", "password": PASSWORD, "device_name": "e2e"},
            )
            assert login.status_code == 200, login.text
            assert "HttpOnly" in login.headers["set-cookie"]
            session_id = login.json()["session"]["id"]
            csrf = login.json()["csrf_token"]
            assert (await browser.get("/v1/me")).json()["session"]["id"] == session_id
            jar = browser.cookies
    finally:
        assert await first.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean stop

    second = Server(env, tmp_path, port=first.port)
    await second.start()
    try:
        async with httpx.AsyncClient(base_url=second.base_url, cookies=jar, timeout=10) as browser:
            await wait_ready(browser)
            me = await browser.get("/v1/me")
            assert me.status_code == 200, me.text
            assert me.json()["session"]["id"] == session_id
            assert me.json()["csrf_token"] == csrf  # derived from the master key kept on disk
            # The restarted server still enforces everything: sign out, and the cookie is dead.
            old = dict(browser.cookies)
            logout = await browser.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf})
            assert logout.status_code == 200
            replay = await browser.get("/v1/me", cookies=None, headers={"Cookie": _header(old)})
            assert replay.status_code == 401
    finally:
        assert await second.stop() in (0, -15)


def _header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())
