"""Verification, change of address and password reset, followed through real mail."""

from __future__ import annotations

from typing import Any

import pytest

from tests.accounts.conftest import SmtpServer, fast_mail
from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.domain.audit import AuditType

NEW_PASSWORD = "a brand new passphrase 42"


async def types_for(client: Client, user_id: str) -> list[str]:
    return [e.type for e in await client.container.db.audit.for_user(user_id, limit=200)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    return {}


async def test_registration_mails_a_link_that_verifies_the_address_once(
    client_factory: ClientFactory, smtp: SmtpServer, db_settings: dict[str, Any]
) -> None:
    client = await client_factory(**fast_mail(smtp, ui_title="Acme ID"), **db_settings)
    email = f"verify-{id(client)}@example.com"
    user = await client.register(email)
    assert user["email_verified"] is False
    mail = await smtp.inbox.wait_for(email)
    assert "Acme ID" in mail.subject and "Acme ID" in mail.text and "Acme ID" in mail.html
    assert mail.link().startswith("http://127.0.0.1:8000/verify-email?token=")
    assert mail.link() in mail.html
    token = mail.token()
    assert len(token) >= 43  # 256 bits, base64url
    stored = await client.container.account_stores.tokens.get(token)
    assert stored is None  # stored hashed, never as sent

    response = await client.post("/v1/me/email/verify", json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email_verified"] is True
    again = await client.post("/v1/me/email/verify", json={"token": token})
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"
    types = await types_for(client, user["id"])
    assert AuditType.EMAIL_VERIFIED in types and AuditType.MAIL_SENT in types


async def test_bad_verification_tokens_change_nothing(client: Client) -> None:
    user = await client.register()
    for token in ["", "x" * 300, "not-a-token", "é" * 10]:
        response = await client.post("/v1/me/email/verify", json={"token": token})
        assert response.status_code in (400, 422), response.text
    assert (await client.container.accounts.get_user(user["id"])).email_verified_at is None


async def test_verification_links_expire_after_a_day(
    client_factory: ClientFactory, smtp: SmtpServer, clock: Any
) -> None:
    client = await client_factory(**fast_mail(smtp))
    await client.register()
    token = (await smtp.inbox.wait_for("alice@example.com")).token()
    clock.advance(24 * 3600 + 1)
    response = await client.post("/v1/me/email/verify", json={"token": token})
    assert response.status_code == 400 and response.json()["error"] == "invalid_token"


async def test_sign_in_waits_for_a_verified_address_when_required(
    client_factory: ClientFactory, smtp: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(smtp, require_verified_email=True))
    await client.register()
    refused = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 403 and refused.json()["error"] == "email_not_verified"
    wrong = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": "wrong password!"}
    )
    assert wrong.status_code == 401  # the address is only revealed to the password's holder
    token = (await smtp.inbox.wait_for("alice@example.com")).token()
    assert (await client.post("/v1/me/email/verify", json={"token": token})).status_code == 200
    await client.login()


async def test_a_new_verification_link_is_throttled_and_supersedes_the_old(
    client_factory: ClientFactory, smtp: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(smtp, verification_rate_limit="2/hour"))
    await client.register()
    await client.login()
    first = (await smtp.inbox.wait_for("alice@example.com")).token()
    assert (await client.post("/v1/me/email/verification")).status_code == 202
    second = (await smtp.inbox.wait_for("alice@example.com", 2)).token()
    assert (await client.post("/v1/me/email/verification")).status_code == 202
    limited = await client.post("/v1/me/email/verification")
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    old = await client.post("/v1/me/email/verify", json={"token": first})
    assert old.status_code == 400
    third = (await smtp.inbox.wait_for("alice@example.com", 3)).token()
    assert third != second
    assert (await client.post("/v1/me/email/verify", json={"token": third})).status_code == 200
    done = await client.post("/v1/me/email/verification")
    assert done.status_code == 409


async def test_a_new_address_takes_effect_once_verified_and_the_old_one_is_told(
    client_factory: ClientFactory, smtp: SmtpServer, db_settings: dict[str, Any]
) -> None:
    client = await client_factory(**fast_mail(smtp), **db_settings)
    old, new = f"old-{id(client)}@example.com", f"new-{id(client)}@example.com"
    await client.register(old)
    await client.login(old)
    wrong = await client.post("/v1/me/email", json={"email": new, "password": "not it at all"})
    assert wrong.status_code == 401
    response = await client.post("/v1/me/email", json={"email": new, "password": PASSWORD})
    assert response.status_code == 202, response.text
    confirm = await smtp.inbox.wait_for(new)
    notice = next(m for m in await _all(smtp, old, 2) if "requested" in m.subject)
    assert new in notice.text
    me = (await client.get("/v1/me")).json()
    assert me["user"]["email"] == old  # not yet

    verified = await client.post("/v1/me/email/verify", json={"token": confirm.token()})
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["email"] == new
    assert verified.json()["user"]["email_verified"] is True
    changed = await smtp.inbox.wait_for(old, 3)
    assert "changed" in changed.subject and new in changed.text
    assert (await client.get("/v1/me")).json()["user"]["email"] == new
    client.cookies.clear()
    await client.login(new)


async def _all(smtp: SmtpServer, address: str, count: int) -> list[Any]:
    await smtp.inbox.wait_for(address, count)
    return smtp.inbox.to(address)


async def test_password_reset_by_mail_ends_every_session_and_token(
    client_factory: ClientFactory, smtp: SmtpServer, db_settings: dict[str, Any]
) -> None:
    client = await client_factory(**fast_mail(smtp), **db_settings)
    email = f"reset-{id(client)}@example.com"
    user = await client.register(email)
    await client.login(email)
    tokens = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
    )
    refresh_token = tokens.json()["refresh_token"]
    events: list[tuple[str, str]] = []

    async def collect(user_id: str, event: str, data: dict[str, Any]) -> None:
        events.append((user_id, event))

    client.container.lifecycle.on_security_event(collect)

    accepted = await client.post("/v1/auth/password-reset", json={"email": email.upper()})
    assert accepted.status_code == 202
    mail = await smtp.inbox.wait_for(email, 2)
    assert "Reset" in mail.subject
    assert mail.link().startswith("http://127.0.0.1:8000/reset-password?token=")
    token = mail.token()

    weak = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422 and weak.json()["error"] == "weak_password"
    done = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 200, done.text
    assert done.json()["revoked_sessions"] == 2
    assert (await client.get("/v1/me")).status_code == 401
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert refreshed.status_code == 401
    bearer = {"Authorization": "Bearer " + tokens.json()["access_token"]}
    assert (await client.get("/v1/me", headers=bearer)).status_code == 401
    again = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"
    changed = await smtp.inbox.wait_for(email, 3)
    assert "password was changed" in changed.subject
    client.cookies.clear()
    refused = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert refused.status_code == 401
    await client.login(email, NEW_PASSWORD)
    types = await types_for(client, user["id"])
    for expected in (
        AuditType.PASSWORD_RESET_REQUESTED,
        AuditType.PASSWORD_RESET,
        AuditType.MAIL_QUEUED,
        AuditType.MAIL_SENT,
    ):
        assert expected in types
    assert (user["id"], "security.password_reset") in events
    # The link reached the mailbox: the address counts as verified.
    assert (await client.container.accounts.get_user(user["id"])).email_verified_at is not None


async def test_a_newer_reset_link_supersedes_and_links_expire_in_30_minutes(
    client_factory: ClientFactory, smtp: SmtpServer, clock: Any
) -> None:
    client = await client_factory(**fast_mail(smtp))
    await client.register()
    for _ in range(2):
        assert (
            await client.post("/v1/auth/password-reset", json={"email": "alice@example.com"})
        ).status_code == 202
    first = (await smtp.inbox.wait_for("alice@example.com", 2)).token()
    second = (await smtp.inbox.wait_for("alice@example.com", 3)).token()
    body = {"token": first, "new_password": NEW_PASSWORD}
    superseded = await client.post("/v1/auth/password-reset/confirm", json=body)
    assert superseded.status_code == 400
    clock.advance(30 * 60 + 1)
    body = {"token": second, "new_password": NEW_PASSWORD}
    expired = await client.post("/v1/auth/password-reset/confirm", json=body)
    assert expired.status_code == 400
    await client.login()  # the old password still works: nothing changed


async def test_reset_requests_are_throttled_per_address_and_per_account(
    client_factory: ClientFactory, smtp: SmtpServer
) -> None:
    client = await client_factory(
        **fast_mail(
            smtp,
            password_reset_rate_limit_address="3/hour",
            password_reset_rate_limit_account="2/hour",
        )
    )
    await client.register()
    statuses = [
        (await client.post("/v1/auth/password-reset", json={"email": e})).status_code
        for e in ["alice@example.com"] * 4 + ["nobody@example.com"] * 4
    ]
    # The address budget answers 429 for known and unknown alike...
    assert statuses == [202, 202, 202, 429, 202, 202, 202, 429]
    # ...the account budget silently: only two links were queued (the outbox is written in
    # the request's own transaction, so counting its rows does not race the sender)...
    queued = await client.container.lifecycle.outbox(limit=100)
    resets = [m for m in queued if m.kind == "password_reset"]
    assert [m.to for m in resets] == ["alice@example.com"] * 2
    # ...and they, with the verification, are all that reach the mailbox.
    await smtp.inbox.wait_for("alice@example.com", 3)
    await client.container.mail_sender.deliver_due()
    assert len(smtp.inbox.to("alice@example.com")) == 3
    assert smtp.inbox.to("nobody@example.com") == []


async def test_an_administrator_sends_a_reset_link(
    client_factory: ClientFactory, smtp: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(smtp))
    await client.register()
    from watchword.services.context import CLI

    await client.container.lifecycle.send_reset("alice@example.com", CLI, actor_id="cli")
    token = (await smtp.inbox.wait_for("alice@example.com", 2)).token()
    body = {"token": token, "new_password": NEW_PASSWORD}
    assert (await client.post("/v1/auth/password-reset/confirm", json=body)).status_code == 200


async def test_a_signed_out_user_asks_for_a_new_link_and_the_answer_reveals_nothing(
    client_factory: ClientFactory, smtp: SmtpServer, clock: Any
) -> None:
    client = await client_factory(**fast_mail(smtp, require_verified_email=True))
    await client.register()
    await smtp.inbox.wait_for("alice@example.com")
    clock.advance(24 * 3600 + 1)  # the first link expired before it was used
    answers = [
        await client.post("/v1/me/email/verification", json={"email": address})
        for address in ("alice@example.com", "nobody@example.com")
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content
    token = (await smtp.inbox.wait_for("alice@example.com", 2)).token()
    assert (await client.post("/v1/me/email/verify", json={"token": token})).status_code == 200
    await client.login()
    assert smtp.inbox.to("nobody@example.com") == []
    bare = await client_factory()
    refused = await bare.post("/v1/me/email/verification")
    assert refused.status_code == 401
