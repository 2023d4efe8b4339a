"""Passkeys in a real browser: Chromium with the DevTools virtual authenticator (a CTAP2
platform authenticator with resident keys and user verification), against `watchword serve`
whose WATCHWORD_PUBLIC_URL is http://localhost:PORT (an IP address cannot be an RP id).

The account page adds a passkey through passkeys.js and the JSON API; then, signed out, the
sign-in page signs in with it without an email; then, as the second step of a password
sign-in; and on a server with a short step-up age, the account page's step-up is made with
the passkey. Every wait is bounded (``LOAD``), a ceiling for a loaded machine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.pages.test_browser import LOAD, Browser, _chromium_present, browser, path_of, wait
from tests.realtime.conftest import Server, make_server

pytestmark = pytest.mark.e2e

__all__ = ["browser"]  # the fixture, shared with the other browser tests

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
except ImportError:  # pragma: no cover - selenium is in the dev dependencies
    pass

EMAIL = "pat@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _chromium_present()
    srv = make_server(tmp_path_factory.mktemp("passkeys"), ui_title="Watchword")
    srv.env["WATCHWORD_PUBLIC_URL"] = f"http://localhost:{srv.port}"
    srv.start()
    response = httpx.post(
        srv.http + "/v1/users", json={"email": EMAIL, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 201, response.text
    yield srv
    srv.stop()


REAUTH_MAX_AGE = 15  # seconds: long enough to add a passkey, short enough to wait out


@pytest.fixture(scope="module")
def short_step_up_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _chromium_present()
    srv = make_server(
        tmp_path_factory.mktemp("passkey-step-up"),
        ui_title="Watchword",
        reauth_max_age=str(REAUTH_MAX_AGE),
    )
    srv.env["WATCHWORD_PUBLIC_URL"] = f"http://localhost:{srv.port}"
    srv.start()
    response = httpx.post(
        srv.http + "/v1/users", json={"email": EMAIL, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 201, response.text
    yield srv
    srv.stop()


def origin(server: Server) -> str:
    return f"http://localhost:{server.port}"


def with_authenticator(driver: WebDriver) -> str:
    driver.execute_cdp_cmd("WebAuthn.enable", {"enableUI": False})
    added = driver.execute_cdp_cmd(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return str(added["authenticatorId"])


def password_sign_in(driver: WebDriver, server: Server) -> None:
    driver.get(origin(server) + "/login")
    driver.find_element(By.ID, "email").send_keys(EMAIL)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()


def add_passkey_on_account_page(driver: WebDriver) -> None:
    add = wait(driver, LOAD, lambda d: d.find_element(By.ID, "passkey-add"), "the add button")
    assert add.is_displayed()  # shown: this browser has WebAuthn
    driver.find_element(By.ID, "passkey-name").send_keys("Chromium")
    add.click()
    wait(
        driver,
        LOAD,
        lambda d: (
            "passkey-added" in d.current_url
            and "Chromium" in d.find_element(By.ID, "passkey-list").text
        ),
        "the new passkey in the list",
    )


def change_password_on_account_page(driver: WebDriver, server: Server, new: str) -> None:
    driver.get(origin(server) + "/account")
    driver.find_element(By.ID, "current_password").send_keys(PASSWORD)
    driver.find_element(By.ID, "new_password").send_keys(new)
    driver.find_element(By.ID, "new_password_again").send_keys(new)
    driver.find_element(By.CSS_SELECTOR, "form[action='/account/password'] button").click()


def me(driver: WebDriver, server: Server) -> dict[str, object]:
    driver.get(origin(server) + "/v1/me")
    body = driver.find_element(By.TAG_NAME, "body").text
    return dict(json.loads(body))


def test_a_passkey_added_on_the_account_page_signs_in_without_an_email(
    server: Server, browser: Browser
) -> None:
    driver = browser()
    authenticator = with_authenticator(driver)
    password_sign_in(driver, server)
    wait(driver, LOAD, lambda d: path_of(d) == "/account", "the password sign-in")

    add_passkey_on_account_page(driver)
    stored = driver.execute_cdp_cmd("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

    # Signed out, the sign-in page signs in with it: no email typed.
    driver.delete_all_cookies()
    driver.get(origin(server) + "/login")
    button = wait(driver, LOAD, lambda d: d.find_element(By.ID, "passkey-sign-in"), "button")
    wait(driver, LOAD, lambda d: button.is_displayed(), "the passkey button shown")
    button.click()
    wait(driver, LOAD, lambda d: path_of(d) == "/account", "the passkey sign-in")
    authentication = me(driver, server)["authentication"]
    assert isinstance(authentication, dict)
    assert authentication["amr"] in (["hwk", "mfa"], ["swk", "mfa"])

    # A password sign-in now needs the passkey as its second step, on the code page.
    driver.delete_all_cookies()
    password_sign_in(driver, server)
    second = wait(
        driver, LOAD, lambda d: d.find_element(By.ID, "passkey-second-factor"), "second step"
    )
    wait(driver, LOAD, lambda d: second.is_displayed(), "the passkey step shown")
    second.click()
    wait(driver, LOAD, lambda d: path_of(d) == "/account", "the second step done")
    authentication = me(driver, server)["authentication"]
    assert isinstance(authentication, dict) and "pwd" in authentication["amr"]
    assert "mfa" in authentication["amr"]


def test_the_account_page_steps_up_with_a_passkey_instead_of_the_password(
    short_step_up_server: Server, browser: Browser
) -> None:
    server = short_step_up_server
    driver = browser()
    with_authenticator(driver)
    password_sign_in(driver, server)
    wait(driver, LOAD, lambda d: path_of(d) == "/account", "the password sign-in")
    add_passkey_on_account_page(driver)
    signed_in = me(driver, server)["authentication"]
    assert isinstance(signed_in, dict) and signed_in["amr"] == ["pwd"]

    # Let the sign-in grow older than the step-up age: changing the password now asks first.
    time.sleep(max(0.0, int(signed_in["auth_time"]) + REAUTH_MAX_AGE + 1 - time.time()))
    change_password_on_account_page(driver, server, "a whole new passphrase 1")
    button = wait(driver, LOAD, lambda d: d.find_element(By.ID, "passkey-reauth"), "step-up")
    wait(driver, LOAD, lambda d: button.is_displayed(), "the passkey step-up shown")
    assert "done=password" not in driver.current_url  # the change was not made
    button.click()
    wait(driver, LOAD, lambda d: "done=reauth-passkey" in d.current_url, "the passkey step-up")

    stepped_up = me(driver, server)["authentication"]
    assert isinstance(stepped_up, dict)
    assert int(stepped_up["auth_time"]) > int(signed_in["auth_time"])
    assert stepped_up["amr"] in (["hwk", "mfa"], ["swk", "mfa"])
    # The change goes through now, with no password step-up in between.
    change_password_on_account_page(driver, server, "a whole new passphrase 1")
    wait(driver, LOAD, lambda d: "done=password" in d.current_url, "the password changed")
