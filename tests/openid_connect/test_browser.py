"""The code flow once in the real Chromium of the pages (Selenium, against `watchword
serve`): the app sends the browser to /oauth2/authorize, the person signs in on the sign-in
page, allows the app on the consent page, and the browser lands on the app's redirect URI
with a code and the app's state. The app's server is a small HTTP server in the test."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.openid_connect.conftest import pkce, query_of
from tests.pages.test_browser import LOAD, Browser, _chromium_present, browser, wait
from tests.realtime.conftest import Server, make_server

pytestmark = pytest.mark.e2e

__all__ = ["browser"]  # the pages' fixture: Chromium with a fresh profile

try:
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - selenium is in the dev dependencies
    By = None  # type: ignore[assignment,misc]


@pytest.fixture
def app_server() -> Iterator[str]:
    """The app's callback: answers 200 to whatever arrives (the test reads the URL)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"signed in")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/callback"
    httpd.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    _chromium_present()
    srv = make_server(tmp_path)
    srv.env["WATCHWORD_PUBLIC_URL"] = srv.http
    try:  # stopped even when it never answered (a start that timed out leaves a process)
        srv.start()
        response = httpx.post(
            srv.http + "/v1/users", json={"email": "alice@example.com", "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        yield srv
    finally:
        srv.stop()


def test_sign_in_consent_and_back_to_the_app_with_a_code(
    served: Server, browser: Browser, app_server: str
) -> None:
    created = served.cli(
        "clients", "create", "--name", "Photos", "--type", "public",
        "--redirect-uri", app_server, "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    client_id = httpx.Response(200, content=created.stdout).json()["client_id"]
    _, challenge = pkce()
    state = secrets.token_urlsafe(12)
    authorize = (
        served.http
        + "/oauth2/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": app_server,
                "scope": "openid email",
                "state": state,
                "nonce": secrets.token_urlsafe(12),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    driver = browser()
    driver.get(authorize)
    wait(driver, LOAD, lambda d: d.find_elements(By.ID, "password"), "the sign-in page")
    driver.find_element(By.ID, "email").send_keys("alice@example.com")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait(driver, LOAD, lambda d: d.find_elements(By.ID, "consent-allow"), "the consent page")
    assert "See your email address" in driver.page_source
    driver.find_element(By.ID, "consent-allow").click()
    wait(driver, LOAD, lambda d: d.current_url.startswith(app_server), "back at the app")
    answer = query_of(driver.current_url)
    assert answer["state"] == state
    assert answer["code"].startswith("ww_ac_")
    assert answer["iss"] == served.http
    assert "signed in" in driver.page_source


def test_a_first_party_app_goes_from_the_sign_in_page_straight_back(
    served: Server, browser: Browser, app_server: str
) -> None:
    created = served.cli(
        "clients", "create", "--name", "Console", "--type", "public", "--first-party",
        "--redirect-uri", app_server, "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    client_id = httpx.Response(200, content=created.stdout).json()["client_id"]
    _, challenge = pkce()
    authorize = (
        served.http
        + "/oauth2/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": app_server,
                "scope": "openid",
                "state": "first",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    driver = browser()
    driver.get(authorize)
    wait(driver, LOAD, lambda d: d.find_elements(By.ID, "password"), "the sign-in page")
    driver.find_element(By.ID, "email").send_keys("alice@example.com")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait(driver, LOAD, lambda d: d.current_url.startswith(app_server), "back at the app")
    assert query_of(driver.current_url)["state"] == "first"
