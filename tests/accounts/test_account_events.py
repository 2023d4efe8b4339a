"""Every step of an account's life is both an audit line and a security event for the user's
sockets (the realtime node subscribes to these events): mail queued and sent, verification,
reset asked and done, a factor added and removed, a recovery code used, a step-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pyotp
import pytest

from tests.accounts.conftest import SmtpServer, fast_mail
from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, ManualClock
from watchword.domain.audit import AuditType

NEW_PASSWORD = "a brand new passphrase 42"

# step -> (its audit line, its security event)
STEPS = {
    "mail queued": (AuditType.MAIL_QUEUED, "security.mail_queued"),
    "mail sent": (AuditType.MAIL_SENT, "security.mail_sent"),
    "address verified": (AuditType.EMAIL_VERIFIED, "security.email_verified"),
    "factor added": (AuditType.MFA_ADDED, "security.mfa_added"),
    "step-up": (AuditType.STEP_UP, "security.step_up"),
    "recovery code used": (AuditType.RECOVERY_CODE_USED, "security.recovery_code_used"),
    "factor removed": (AuditType.MFA_REMOVED, "security.mfa_removed"),
    "reset asked": (AuditType.PASSWORD_RESET_REQUESTED, "security.password_reset_requested"),
    "reset done": (AuditType.PASSWORD_RESET, "security.password_reset"),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    return {}


async def audit_types(client: Client, user_id: str) -> set[str]:
    return {e.type for e in await client.container.db.audit.for_user(user_id, limit=500)}


async def test_every_account_step_is_an_audit_line_and_a_security_event(
    client_factory: ClientFactory,
    smtp: SmtpServer,
    clock: ManualClock,
    db_settings: dict[str, Any],
) -> None:
    client = await client_factory(**fast_mail(smtp), **db_settings)
    events: list[tuple[str, str]] = []

    async def collect(user_id: str, event: str, data: dict[str, Any]) -> None:
        events.append((user_id, event))

    client.container.lifecycle.on_security_event(collect)
    email = f"steps-{id(client)}@example.com"
    user_id = (await client.register(email))["id"]

    verify = await smtp.inbox.wait_for(email)
    verified = await client.post("/v1/me/email/verify", json={"token": verify.token()})
    assert verified.status_code == 200, verified.text
    await client.login(email)

    secret = (await client.post("/v1/me/mfa/totp")).json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery_codes = confirmed.json()["recovery_codes"]
    clock.advance(30)  # the next time step: a code is accepted once
    stepped_up = await client.post(
        "/v1/auth/reauth", json={"password": PASSWORD, "code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert stepped_up.status_code == 200, stepped_up.text

    assert (await client.post("/v1/auth/logout")).status_code == 200
    challenge = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert challenge.json()["mfa_required"] is True
    signed_in = await client.post(
        "/v1/auth/mfa",
        json={"challenge": challenge.json()["challenge"], "code": recovery_codes[0]},
    )
    assert signed_in.status_code == 200, signed_in.text
    client.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
    removed = await client.delete("/v1/me/mfa/totp")
    assert removed.status_code in (200, 204), removed.text

    asked = await client.post("/v1/auth/password-reset", json={"email": email})
    assert asked.status_code == 202
    reset = await smtp.inbox.wait_for(email, 2)
    done = await client.post(
        "/v1/auth/password-reset/confirm",
        json={"token": reset.token(), "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 200, done.text
    await smtp.inbox.wait_for(email, 3)  # "your password was changed"

    def missing_now(types: set[str]) -> dict[str, list[str]]:
        announced = {event for uid, event in events if uid == user_id}
        gaps: dict[str, list[str]] = {}
        for step, (audit_type, event) in STEPS.items():
            lacking = [audit_type] if audit_type not in types else []
            lacking += [event] if event not in announced else []
            if lacking:
                gaps[step] = lacking
        return gaps

    # Sending is in the background: a bound on waiting for its lines, never a measure.
    for _ in range(250):
        missing = missing_now(await audit_types(client, user_id))
        if not missing:
            break
        await asyncio.sleep(0.02)
    assert missing == {}
