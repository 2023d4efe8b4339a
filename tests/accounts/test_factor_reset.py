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
from watchword.services.context import CLI
from watchword.stores.sql import accounts as sql_accounts


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
    app_sign_in = await client.post(
        "/v1/auth/passkey",
        json={"credential": authenticator.get(await sign_in_options(client)), "mode": "token"},
    )
    assert app_sign_in.status_code == 200, app_sign_in.text
    refresh_token = app_sign_in.json()["refresh_token"]

    monkeypatch.setenv("WATCHWORD_DATABASE_URL", client.container.settings.database_url)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("WATCHWORD_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("WATCHWORD_SMTP_URL", raising=False)
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["users", "reset-mfa", email, "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["totp_removed"] is True and printed["passkeys_removed"] == 1
    assert printed["revoked_sessions"] == 2  # the browser's and the app's

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

    # The app's refresh family ended with its session.
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert refreshed.status_code == 401
    assert "session of this refresh token has been revoked" in refreshed.json()["message"]

    # The running server refuses the removed passkey, and a password alone signs in again.
    refused = await client.post(
        "/v1/auth/passkey", json={"credential": authenticator.get(await sign_in_options(client))}
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"
    again = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200 and "mfa_required" not in again.json()

    unknown = await asyncio.to_thread(cli.main, ["users", "reset-mfa", "nobody@example.com"])
    assert unknown == 1


@pytest.mark.parametrize("failing_write", ["insert_mail", "insert_audit"])
async def test_a_reset_that_fails_midway_leaves_factors_sessions_and_outbox_as_they_were(
    client_factory: ClientFactory,
    clock: ManualClock,
    db_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    failing_write: str,
) -> None:
    client = await client_factory(**db_settings)
    email = f"midway-{failing_write}-{id(client)}@example.com"
    user = await client.register(email)
    await client.login(email)
    secret = (await client.post("/v1/me/mfa/totp")).json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200
    await add_passkey(client, SoftwareAuthenticator(ORIGIN, RP_ID))
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    container = client.container
    outbox_before = {m.id for m in await container.account_stores.outbox.page(limit=500)}
    feed_before = await container.db.control.last_id()

    # The factors, recovery codes, passkeys and sessions are written before this one fails.
    async def refused(conn: object, rows: object) -> None:
        raise RuntimeError(f"{failing_write} refused")

    monkeypatch.setattr(sql_accounts, failing_write, refused)
    user_row = await container.accounts.get_user(user["id"])
    with pytest.raises(RuntimeError, match="refused"):
        await container.factor_reset.reset(user_row, CLI, actor_id="cli")
    monkeypatch.undo()

    assert await container.mfa.is_on(user["id"]) is True
    assert await container.account_stores.mfa.unused_codes(user["id"]) == 10
    assert len(await container.passkeys.list_for(user["id"])) == 1
    session = await container.db.sessions.get(session_id)
    assert session is not None and session.revoked_at is None
    assert (await client.get("/v1/me")).status_code == 200
    outbox_after = {m.id for m in await container.account_stores.outbox.page(limit=500)}
    assert outbox_after == outbox_before
    events = await container.db.audit.for_user(user["id"], limit=200)
    assert not [e for e in events if e.type == AuditType.MFA_RESET]
    assert await container.db.control.last_id() == feed_before  # no revocation in the feed
