"""No secret reaches the server's log: a whole flow against `watchword serve` at debug, then
every secret it used is searched for in what the server printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import websockets

from tests.helpers import PASSWORD, TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving
from watchword.sdk.signing import HttpSignatureAuth
from watchword.web.logs import redact_query, redact_text

pytestmark = pytest.mark.e2e


def test_every_credential_bearing_name_is_redacted_whatever_its_case_or_encoding() -> None:
    query = (
        "Access_Token=a1&refresh_token=r1&TICKET=t1&token=x&api_key=k&key=k2&password=p"
        "&code=c&client_secret=s&access%5Ftoken=enc&page=2"
    )
    redacted = redact_query(query)
    for secret in ("a1", "r1", "t1", "=x", "=k&", "k2", "=p&", "=c&", "=s&", "enc"):
        assert secret not in redacted + "&", secret
    assert "page=2" in redacted
    line = 'GET /v1/realtime?ticket=abc&x=1 HTTP/1.1" 101'
    assert redact_text(line) == 'GET /v1/realtime?ticket=[redacted]&x=1 HTTP/1.1" 101'


def _cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [WATCHWORD, *args],
        input=stdin.encode() if stdin else None,
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()


async def _flow(url: str, env: dict[str, str], cwd: Path) -> list[str]:
    secrets = [PASSWORD]
    email = "logs@example.com"
    ws_url = url.replace("http", "ws") + "/v1/realtime"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (
            await http.post("/v1/users", json={"email": email, "password": PASSWORD})
        ).is_success
        # A careless client puts the password in the query string too.
        await http.post(f"/v1/auth/login?password={PASSWORD}", json={"email": email})
        cookie_login = await http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        secrets += [v for _, v in cookie_login.cookies.items()]
        csrf = cookie_login.json()["csrf_token"]
        token_login = await http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
        )
        tokens = token_login.json()
        refreshed = (
            await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).json()
        secrets += [tokens["access_token"], tokens["refresh_token"], refreshed["refresh_token"]]
        bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
        secrets.append(refreshed["access_token"])
        await http.get(f"/v1/me?Access_Token={refreshed['access_token']}")
        await http.get(f"/v1/me?refresh_token={refreshed['refresh_token']}")
        key = (
            await http.post(
                "/v1/api-keys",
                json={"name": "logs", "scopes": ["profile"]},
                headers={"X-CSRF-Token": csrf},
            )
        ).json()["key"]
        secrets.append(key)
        assert (await http.get("/v1/me", headers={"X-API-Key": key})).status_code == 200
        await http.get(f"/v1/me?api_key={key}")
        signing = (
            await http.post(
                "/v1/signing-keys",
                json={"name": "logs", "scopes": ["profile"]},
                headers={"X-CSRF-Token": csrf},
            )
        ).json()
        secrets.append(signing["secret"])
        signed = await http.get(
            "/v1/me", auth=HttpSignatureAuth(signing["signing_key"]["key_id"], signing["secret"])
        )
        assert signed.status_code == 200
        ticket = (await http.post("/v1/realtime/ticket", headers=bearer)).json()["ticket"]
        secrets.append(ticket)
        async with websockets.connect(f"{ws_url}?ticket={ticket}") as ws:
            await asyncio.wait_for(ws.recv(), 10)
        async with websockets.connect(f"{ws_url}?access_token={refreshed['access_token']}") as ws:
            await asyncio.wait_for(ws.recv(), 10)
        client = json.loads(
            _cli(env, cwd, "clients", "create", "--name", "logs", "--scopes", "profile", "--json")
        )
        secrets.append(client["client_secret"])
        grant = await http.post(
            f"/oauth2/token?client_secret={client['client_secret']}",
            data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        )
        assert grant.status_code == 200, grant.text
        secrets.append(grant.json()["access_token"])
    return secrets


def test_a_whole_flow_at_debug_leaves_no_secret_in_the_log(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHWORD_", "API_"))}
    env.update(
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        WATCHWORD_SECRET_KEY_FILE=str(tmp_path / "watchword.secret"),
        WATCHWORD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/watchword.db",
    )
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [WATCHWORD, "serve", "--port", str(port), "--log-level", "debug"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, output=log_path.read_text)
        secrets = asyncio.run(_flow(url, env, tmp_path))
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    text = log_path.read_text()
    assert "GET /v1/me" in text  # the access log is there, at debug and at info
    assert "WEBSOCKET /v1/realtime" in text
    leaked = [secret[:12] + "..." for secret in secrets if secret and secret in text]
    assert leaked == [], leaked
