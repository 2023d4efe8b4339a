"""Recovery in a real browser: forgot the password, follow the mailed link, set a new one,
sign in with it. Debian's Chromium, `watchword serve`, and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.accounts.conftest import SmtpServer
from tests.helpers import PASSWORD
from tests.pages import test_browser as pages
from tests.realtime.conftest import Server, make_server
from watchword.web.pages.mail_links import RESET_SENT

pytestmark = pytest.mark.e2e

browser = pages.browser  # the same fixture: fresh Chromium profiles
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[tuple[Server, SmtpServer]]:
    pages._chromium_present()
    smtp = SmtpServer()
    smtp.start()
    srv = make_server(tmp_path, smtp_url=smtp.url, mail_poll_interval="0.1")
    srv.env["WATCHWORD_PUBLIC_URL"] = srv.http
    srv.start()
    yield srv, smtp
    srv.stop()
    smtp.stop()


async def test_forgot_password_mail_reset_and_sign_in(
    mail_server: tuple[Server, SmtpServer], browser: pages.Browser
) -> None:
    srv, smtp = mail_server
    email = "dana@example.com"
    created = httpx.post(srv.http + "/v1/users", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    driver = browser()
    # The registration's link: the page only shows a button (pressing it verifies).
    verification = await smtp.inbox.wait_for(email, within=pages.LOAD)
    driver.get(verification.link())
    pages.screenshot(driver, "verify-email")
    driver.find_element(pages.By.CSS_SELECTOR, "form[action='/verify-email'] button").click()
    pages.wait(driver, pages.LOAD, lambda d: "is verified" in d.page_source, "verified")
    pages.screenshot(driver, "verify-email-done")

    driver.get(srv.http + "/login")
    driver.find_element(pages.By.LINK_TEXT, "Forgot your password?").click()
    pages.wait(driver, pages.LOAD, lambda d: pages.path_of(d) == "/forgot-password", "forgot")
    pages.screenshot(driver, "forgot-password")
    driver.find_element(pages.By.ID, "email").send_keys(email)
    driver.find_element(pages.By.CSS_SELECTOR, "form[action='/forgot-password'] button").click()
    pages.wait(driver, pages.LOAD, lambda d: RESET_SENT in d.page_source, "the same answer")

    mail = None
    for received in range(1, 4):  # the registration's verification mail comes first
        message = await smtp.inbox.wait_for(email, count=received, within=pages.LOAD)
        if "/reset-password?token=" in message.text:
            mail = message
            break
    assert mail is not None
    driver.get(mail.link())
    pages.screenshot(driver, "reset-password")
    driver.find_element(pages.By.ID, "new_password").send_keys(NEW_PASSWORD)
    driver.find_element(pages.By.ID, "new_password_again").send_keys(NEW_PASSWORD)
    driver.find_element(pages.By.CSS_SELECTOR, "form[action='/reset-password'] button").click()
    pages.wait(
        driver, pages.LOAD, lambda d: "every device was signed out" in d.page_source, "reset"
    )
    pages.screenshot(driver, "reset-password-done")
    driver.find_element(pages.By.LINK_TEXT, "Sign in with your new password").click()
    pages.wait(driver, pages.LOAD, lambda d: pages.path_of(d) == "/login", "back to sign in")
    driver.find_element(pages.By.ID, "email").send_keys(email)
    driver.find_element(pages.By.ID, "password").send_keys(NEW_PASSWORD)
    driver.find_element(pages.By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    pages.wait(driver, pages.LOAD, lambda d: pages.path_of(d) == "/account", "signed in")
