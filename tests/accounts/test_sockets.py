"""A running server: account steps reach the user's sockets, and a reset closes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.accounts.conftest import SmtpServer
from tests.realtime.conftest import Server, make_server
from tests.realtime.helpers import closed, connect_device, next_event, register, sign_in
from watchword.web.realtime import closecodes


@pytest.fixture
def mail_server(tmp_path: Path, smtp: SmtpServer) -> Iterator[Server]:
    server = make_server(tmp_path, smtp_url=smtp.url, mail_poll_interval="0.1")
    server.start()
    yield server
    server.stop()


@pytest.mark.e2e
async def test_a_password_reset_is_announced_and_closes_the_users_sockets(
    mail_server: Server, smtp: SmtpServer
) -> None:
    email = await register(mail_server)
    device = await sign_in(mail_server, email)
    ws = await connect_device(mail_server, device)
    try:
        response = await device.http.post("/v1/auth/password-reset", json={"email": email})
        assert response.status_code == 202
        await next_event(ws, "security.password_reset_requested")
        token = (await smtp.inbox.wait_for(email, 2)).token()
        sent = await next_event(ws, "security.mail_sent")
        assert sent["data"]["kind"] in ("verify_email", "password_reset")
        done = await device.http.post(
            "/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": "a brand new passphrase 42"},
        )
        assert done.status_code == 200, done.text
        code, _ = await closed(ws)
        assert code == closecodes.SESSION_REVOKED.code
    finally:
        await ws.close()
        await device.close()
