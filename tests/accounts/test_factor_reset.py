"""`watchword users reset-mfa EMAIL`: an administrator's answer to a lost factor removes TOTP,
recovery codes and passkeys, ends every session of the user, writes an audit line and mails
the user; the server that is running refuses the removed passkey at once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest

from tests.accounts.authenticator import SoftwareAuthenticator
from tests.accounts.test_passkeys import ORIGIN, PUBLIC_URL, RP_ID, add_passkey, sign_in_options
from tests.conftest import ClientFactory
from tests.helpers import PASSWORD, TEST_SECRET_KEY, ManualClock
from watchword import cli
from watchword.domain.audit import AuditType


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {"public_url": PUBLIC_URL}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("postgres_url")
    return settings


async def test_reset_mfa_removes_every_factor_ends_sessions_and_mails_the_user(
    client_factory: ClientFactory,
    clock: ManualClock,
    db_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The command runs on the system clock: the app's sessions must be live by it too.
    clock.advance((datetime.now(UTC) - clock.now()).total_seconds())
    client = await client_factory(**db_settings)
    email = f"lost-{id(client)}@example.com"
    user = await client.register(email)
    await client.login(email)
    secret = (await client.post("/v1/me/mfa/totp")).json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    await add_passkey(client, authenticator)
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    seen: list[str] = []

    async def hook(user_id: str, event: str, data: dict[str, Any]) -> None:
        seen.append(event)

    client.container.lifecycle.on_security_event(hook)

    monkeypatch.setenv("WATCHWORD_DATABASE_URL", client.container.settings.database_url)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("WATCHWORD_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("WATCHWORD_SMTP_URL", raising=False)
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["users", "reset-mfa", email, "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["totp_removed"] is True and printed["passkeys_removed"] == 1
    assert printed["revoked_sessions"] == 1

    container = client.container
    assert await container.mfa.is_on(user["id"]) is False
    assert await container.account_stores.mfa.unused_codes(user["id"]) == 0
    assert await container.passkeys.list_for(user["id"]) == []
    ended = await container.db.sessions.get(session_id)
    assert ended is not None and ended.revoked_at is not None
    mail = await container.account_stores.outbox.get(printed["mail_id"])
    assert mail is not None and mail.kind == "mfa_reset" and mail.to == email
    assert "passkeys" in mail.text and "/reset-password" in mail.text
    events = await container.db.audit.for_user(user["id"], limit=200)
    reset = [e for e in events if e.type == AuditType.MFA_RESET]
    assert len(reset) == 1 and reset[0].actor_id == "cli"

    # The running server refuses the removed passkey, and a password alone signs in again.
    refused = await client.post(
        "/v1/auth/passkey", json={"credential": authenticator.get(await sign_in_options(client))}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"
    again = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200 and "mfa_required" not in again.json()

    unknown = await asyncio.to_thread(cli.main, ["users", "reset-mfa", "nobody@example.com"])
    assert unknown == 1
