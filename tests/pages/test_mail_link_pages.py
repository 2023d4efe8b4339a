"""The pages for mailed links and signed-out recovery, followed through real mail: verify an
address, ask for a reset, set a new password; the unverified sign-in, the account page's
verification button and its step-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.accounts.conftest import SmtpServer, fast_mail
from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from tests.pages.conftest import CLI, form_token, page_login, signed_in_page
from tests.pages.test_forms import ESCAPED, HOSTILE, assert_csp

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def mailbox() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def local(link: str) -> str:
    """A mailed link as a path on the app under test."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def token_of_form(html: str, action: str) -> str:
    """The CSRF token of the form posting to ``action`` (a signed-in page has several)."""
    return form_token(html.split(f'action="{action}"', 1)[1])


async def unverified(client: Client, user: dict[str, Any]) -> bool:
    return (await client.container.accounts.get_user(user["id"])).email_verified_at is None


async def password_works(client: Client, password: str) -> bool:
    response = await client.container.accounts.find_user("alice@example.com")
    return await client.container.accounts.verify_password(response.password_hash, password)


# -- email verification --------------------------------------------------------------------


async def test_a_mailed_verification_link_verifies_only_when_the_button_is_pressed(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox))
    user = await client.register()
    link = (await mailbox.inbox.wait_for("alice@example.com")).link()
    assert link.startswith("http://127.0.0.1:8000/verify-email?token=")
    # A mail scanner fetching the link (twice) consumes nothing.
    for _ in range(2):
        page = await client.get(local(link))
        assert page.status_code == 200 and "Verify my address" in page.text
        assert_csp(page)
    assert await unverified(client, user)

    token = link.split("token=", 1)[1]
    data = {"csrf_token": form_token(page.text), "token": token}
    done = await client.post("/verify-email", data=data)
    assert done.status_code == 200, done.text
    assert_csp(done)
    assert "is verified" in done.text and 'href="/login"' in done.text
    assert not await unverified(client, user)

    again = await client.post("/verify-email", data=data)
    assert again.status_code == 400
    assert "already used" in again.text and 'action="/verify-email/new"' in again.text


async def test_verification_without_the_form_token_is_refused_and_verifies_nothing(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox))
    user = await client.register()
    token = (await mailbox.inbox.wait_for("alice@example.com")).token()
    await client.get("/verify-email", params={"token": token})  # the pre-session cookie
    for data in ({"token": token}, {"token": token, "csrf_token": "forged"}):
        response = await client.post("/verify-email", data=data)
        assert response.status_code == 403, response.text
        assert_csp(response)
    assert await unverified(client, user)


async def test_the_verification_page_escapes_what_the_link_carries(client: Client) -> None:
    page = await client.get("/verify-email", params={"token": HOSTILE})
    assert HOSTILE not in page.text and ESCAPED in page.text
    assert_csp(page)
    empty = await client.get("/verify-email")
    assert empty.status_code == 400 and "incomplete" in empty.text


async def test_sign_in_with_an_unverified_address_offers_a_new_link(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox, require_verified_email=True))
    user = await client.register()
    await mailbox.inbox.wait_for("alice@example.com")
    refused = await page_login(client)
    assert refused.status_code == 403, refused.text
    assert "not verified" in refused.text and 'action="/verify-email/new"' in refused.text
    assert "watchword_session" not in refused.cookies
    assert_csp(refused)

    resend = {"email": "alice@example.com"}
    for data in (resend, {**resend, "csrf_token": "forged"}):
        assert (await client.post("/verify-email/new", data=data)).status_code == 403
    assert len(mailbox.inbox.to("alice@example.com")) == 1

    sent = await client.post(
        "/verify-email/new", data={**resend, "csrf_token": form_token(refused.text)}
    )
    assert sent.status_code == 202 and "a new link is on its way" in sent.text
    nobody = await client.post(
        "/verify-email/new",
        data={"email": "nobody@example.com", "csrf_token": form_token(refused.text)},
    )
    assert nobody.status_code == 202 and "a new link is on its way" in nobody.text
    fresh = await mailbox.inbox.wait_for("alice@example.com", count=2)
    page = await client.get(local(fresh.link()))
    verified = await client.post(
        "/verify-email", data={"csrf_token": form_token(page.text), "token": fresh.token()}
    )
    assert verified.status_code == 200 and not await unverified(client, user)
    assert (await page_login(client)).status_code == 303


# -- password reset ------------------------------------------------------------------------


async def test_forgot_password_then_the_mailed_link_sets_a_new_password_and_signs_out_all(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox))
    user = await client.register()
    await client.login()  # another device, through the API; this browser is signed out
    client.cookies.clear()
    del client.headers["X-CSRF-Token"]
    assert len(await client.container.sessions.list_live(user["id"])) == 1
    login = await client.get("/login")
    assert 'href="/forgot-password"' in login.text

    page = await client.get("/forgot-password")
    assert page.status_code == 200
    assert_csp(page)
    answers = []
    for email in ("alice@example.com", "nobody@example.com"):
        sent = await client.post(
            "/forgot-password", data={"email": email, "csrf_token": form_token(page.text)}
        )
        assert sent.status_code == 202
        answers.append(sent.text)
    assert answers[0] == answers[1] and "If an account uses this address" in answers[0]

    mail = await mailbox.inbox.wait_for("alice@example.com", count=2)
    assert "/reset-password?token=" in mail.link()
    form = await client.get(local(mail.link()))
    assert form.status_code == 200 and "At least" in form.text
    assert_csp(form)
    base = {"csrf_token": form_token(form.text), "token": mail.token()}

    mismatch = await client.post(
        "/reset-password",
        data={**base, "new_password": NEW_PASSWORD, "new_password_again": "other"},
    )
    assert mismatch.status_code == 400 and "do not match" in mismatch.text
    weak = await client.post(
        "/reset-password", data={**base, "new_password": "short", "new_password_again": "short"}
    )
    assert weak.status_code == 400 and 'id="form-error"' in weak.text
    assert await password_works(client, PASSWORD)

    strong = {**base, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
    done = await client.post("/reset-password", data=strong)
    assert done.status_code == 200, done.text
    assert_csp(done)
    assert "every device was signed out" in done.text and 'href="/login"' in done.text
    assert await client.container.sessions.list_live(user["id"]) == []

    reused = await client.post("/reset-password", data=strong)
    assert reused.status_code == 400 and 'href="/forgot-password"' in reused.text
    assert (await page_login(client, password=PASSWORD)).status_code == 401
    assert (await page_login(client, password=NEW_PASSWORD)).status_code == 303


async def test_reset_forms_without_the_form_token_are_refused_and_change_nothing(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox))
    await client.register()
    await client.get("/forgot-password")  # the pre-session cookie
    for extra in ({}, {"csrf_token": "forged"}):
        asked = await client.post("/forgot-password", data={"email": "alice@example.com", **extra})
        assert asked.status_code == 403, asked.text
        assert_csp(asked)
    outbox = await client.container.lifecycle.outbox(limit=50)
    assert [m.kind for m in outbox].count("password_reset") == 0, outbox

    link = await client.container.lifecycle.send_reset("alice@example.com", CLI, actor_id="tests")
    token = link.text.split("token=", 1)[1].split()[0]
    strong = {"token": token, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
    for extra in ({}, {"csrf_token": "forged"}):
        response = await client.post("/reset-password", data={**strong, **extra})
        assert response.status_code == 403, response.text
    assert await password_works(client, PASSWORD)
    # Another site's page posting with a token it cannot have been given:
    page = await client.get("/reset-password", params={"token": token})
    cross = await client.post(
        "/reset-password",
        data={**strong, "csrf_token": form_token(page.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and await password_works(client, PASSWORD)


async def test_reset_pages_escape_and_throttle_with_the_wait(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(password_reset_rate_limit_address="1/hour")
    page = await client.get("/reset-password", params={"token": HOSTILE})
    assert HOSTILE not in page.text and ESCAPED in page.text
    bare = await client.get("/reset-password")
    assert bare.status_code == 303 and bare.headers["location"] == "/forgot-password"

    form = await client.get("/forgot-password")
    data = {"email": HOSTILE, "csrf_token": form_token(form.text)}
    assert (await client.post("/forgot-password", data=data)).status_code == 202
    throttled = await client.post("/forgot-password", data=data)
    assert throttled.status_code == 429
    assert "Try again in" in throttled.text and int(throttled.headers["retry-after"]) > 0
    assert HOSTILE not in throttled.text and ESCAPED in throttled.text


# -- the account page ----------------------------------------------------------------------


async def test_the_account_page_shows_verification_and_sends_a_link(
    client_factory: ClientFactory, mailbox: SmtpServer
) -> None:
    client = await client_factory(**fast_mail(mailbox))
    user = await client.register()
    await mailbox.inbox.wait_for("alice@example.com")
    await page_login(client)
    html, token = await signed_in_page(client)
    assert "Not verified" in html and 'action="/account/email/verification"' in html

    for data in ({}, {"csrf_token": "forged"}):
        refused = await client.post("/account/email/verification", data=data)
        assert refused.status_code == 403
    assert len(mailbox.inbox.to("alice@example.com")) == 1

    sent = await client.post("/account/email/verification", data={"csrf_token": token})
    assert sent.status_code == 303 and sent.headers["location"] == "/account?done=verification"
    fresh = await mailbox.inbox.wait_for("alice@example.com", count=2)
    page = await client.get(local(fresh.link()))
    form = token_of_form(page.text, "/verify-email")
    done = await client.post("/verify-email", data={"csrf_token": form, "token": fresh.token()})
    assert done.status_code == 200 and 'href="/account"' in done.text, done.text
    assert not await unverified(client, user)
    html, _ = await signed_in_page(client)
    assert "Verified" in html and 'action="/account/email/verification"' not in html


async def test_a_password_change_after_a_while_asks_for_the_password_again(
    client_factory: ClientFactory, clock: Any
) -> None:
    client = await client_factory()
    user = await client.register()
    await page_login(client)
    clock.advance(301)
    _, token = await signed_in_page(client)
    change = {
        "csrf_token": token,
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD,
    }
    asked = await client.post("/account/password", data=change)
    assert asked.status_code == 401, asked.text
    assert 'action="/account/reauth"' in asked.text and "confirm your password" in asked.text
    assert await password_works(client, PASSWORD)

    for data in ({"password": PASSWORD}, {"password": PASSWORD, "csrf_token": "forged"}):
        assert (await client.post("/account/reauth", data=data)).status_code == 403
    assert (await client.post("/account/password", data=change)).status_code == 401
    key = {"csrf_token": token, "name": "late", "scopes": "profile", "expires": "7d"}
    late_key = await client.post("/account/api-keys", data=key)
    assert late_key.status_code == 401 and 'action="/account/reauth"' in late_key.text
    assert await client.container.api_keys.list_for_user(user["id"]) == []

    wrong = await client.post(
        "/account/reauth", data={"password": "not it at all", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "incorrect" in wrong.text
    confirmed = await client.post(
        "/account/reauth", data={"password": PASSWORD, "csrf_token": token}
    )
    assert confirmed.status_code == 303, confirmed.text
    assert (await client.post("/account/api-keys", data=key)).status_code == 201
    changed = await client.post("/account/password", data=change)
    assert changed.status_code == 303, changed.text
    assert await password_works(client, NEW_PASSWORD)
