"""The pages in a real browser: Debian's Chromium driven by Selenium, against `watchword serve`.

Two browser profiles are two devices. Every wait is bounded (``LIVE``): the pages react to
realtime events, so the bound is a ceiling for a loaded machine, never a measured result.
Screenshots of each page (light and dark, 1280 and 360 px wide) go to tests/artifacts/pages/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import service_unavailable
from tests.helpers import PASSWORD
from tests.realtime.conftest import Server, make_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "pages"
LIVE = 3.0  # seconds: the ceiling for a live change to show (the pages react in milliseconds)
LOAD = 15.0  # seconds: the ceiling for a page load or form post

pytestmark = pytest.mark.e2e

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - selenium is in the dev dependencies
    webdriver = None  # type: ignore[assignment]


def _chromium_present() -> None:
    if webdriver is None:
        service_unavailable("Selenium", "not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            service_unavailable("Chromium", f"{path} is missing (scripts/test-deps installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _chromium_present()
    srv = make_server(tmp_path_factory.mktemp("pages"), ui_title="Watchword")
    # A small account limit so the throttling message is reachable; sign-ins that succeed
    # do not count.
    srv.env["WATCHWORD_LOGIN_RATE_LIMIT_ACCOUNT"] = "3/minute"
    srv.start()
    srv.create_user("root@example.com", "admin")
    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        response = httpx.post(
            srv.http + "/v1/users", json={"email": email, "password": PASSWORD}, timeout=30
        )
        assert response.status_code == 201, response.text
        srv.users[email] = response.json()["user"]
    yield srv
    srv.stop()


Browser = Callable[[], "WebDriver"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Opens Chromium instances, each with its own fresh profile (a device of its own)."""
    _chromium_present()
    opened: list[WebDriver] = []

    def open_browser() -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            f"--user-data-dir={tmp_path / f'profile-{len(opened)}'}",
        ):
            options.add_argument(flag)
        try:
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except WebDriverException as exc:
            service_unavailable("Chromium", exc.msg)
            raise
        driver.set_page_load_timeout(LOAD)
        opened.append(driver)
        return driver

    yield open_browser
    for driver in opened:
        driver.quit()


def path_of(driver: WebDriver) -> str:
    return str(driver.execute_script("return window.location.pathname"))


def is_stale(element: Any) -> bool:
    """The element's page has been replaced (a form's answer arrived)."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def wait(driver: WebDriver, within: float, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(
        driver, within, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)
    ).until(condition, message=what)


def sign_in(driver: WebDriver, server: Server, email: str, device: str = "") -> None:
    driver.get(server.http + "/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    if device:
        driver.find_element(By.ID, "device_name").send_keys(device)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait(driver, LOAD, lambda d: path_of(d) == "/account", f"{email} reaches /account")


def live(driver: WebDriver) -> None:
    """Wait until the page's realtime connection is up."""
    wait(
        driver,
        LOAD,
        lambda d: d.find_element(By.ID, "live-status").text == "Live",
        "the page's realtime connection is up",
    )


def device_names(driver: WebDriver) -> list[str]:
    # Read in one script: the list is replaced whenever a realtime event arrives.
    names: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#device-list .device-name')]"
        ".map(e => e.textContent.trim())"
    )
    return names


def sign_out_device(driver: WebDriver, name: str) -> None:
    def click(d: WebDriver) -> bool:
        row = d.find_element(By.XPATH, f"//li[.//strong[text()={name!r}]]")
        row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        return True

    wait(driver, LOAD, click, f"click Sign out on {name}")


def session_id(driver: WebDriver) -> str:
    element = driver.find_element(By.CSS_SELECTOR, "meta[name='session-id']")
    return str(element.get_attribute("content"))


def returns_to_login(driver: WebDriver, what: str) -> float:
    started = time.monotonic()
    wait(driver, LIVE, lambda d: path_of(d) == "/login", what)
    return time.monotonic() - started


# -- devices, live --------------------------------------------------------------------------


def test_a_new_device_appears_live_and_a_signed_out_device_returns_to_sign_in(
    server: Server, browser: Browser
) -> None:
    a, b = browser(), browser()
    sign_in(a, server, "alice@example.com", device="Desk A")
    live(a)
    assert device_names(a) == ["Desk A"]

    sign_in(b, server, "alice@example.com", device="Laptop B")
    wait(a, LIVE, lambda d: "Laptop B" in device_names(d), "B appears on A's page")
    live(b)

    # A signs B out from its device list; B's open page says so and goes to /login.
    sign_out_device(a, "Laptop B")
    returns_to_login(b, "B's page returns to /login")
    wait(a, LIVE, lambda d: "Laptop B" not in device_names(d), "B is gone from A's list")

    # B signs in again; the CLI revokes A: A's page reacts, and A disappears from B's list.
    sign_in(b, server, "alice@example.com", device="Laptop B")
    live(b)
    assert "Desk A" in device_names(b)
    result = server.cli("sessions", "revoke", session_id(a))
    assert result.returncode == 0, result.stderr
    returns_to_login(a, "A's page returns to /login after the CLI revoked it")
    wait(b, LIVE, lambda d: "Desk A" not in device_names(d), "A disappears from B's list")


def test_an_admin_sees_who_is_online_and_a_disabled_user_page_reacts(
    server: Server, browser: Browser
) -> None:
    admin, user = browser(), browser()
    sign_in(admin, server, "root@example.com")
    admin.get(server.http + "/admin")
    live(admin)
    sign_in(user, server, "bob@example.com", device="Bob's phone")
    live(user)
    wait(
        admin,
        LIVE,
        lambda d: "bob@example.com" in d.find_element(By.ID, "online-list").text,
        "Bob shows as online on the admin page",
    )

    bob = server.users["bob@example.com"]
    admin.get(f"{server.http}/admin/users/{bob['id']}")
    assert "Bob's phone" in admin.find_element(By.TAG_NAME, "main").text
    admin.find_element(By.XPATH, "//button[text()='Disable account']").click()
    wait(admin, LOAD, lambda d: "done=disabled" in d.current_url, "the admin's form is done")
    returns_to_login(user, "Bob's open page returns to /login")

    # Disabled, Bob is told so at sign-in; enabled again, he signs in.
    user.find_element(By.ID, "email").send_keys("bob@example.com")
    user.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait(user, LOAD, lambda d: "disabled" in d.find_element(By.ID, "form-error").text, "told")
    admin.find_element(By.XPATH, "//button[text()='Enable account']").click()
    wait(admin, LOAD, lambda d: "done=enabled" in d.current_url, "enabled")
    sign_in(user, server, "bob@example.com")


def test_throttled_sign_in_shows_the_wait(server: Server, browser: Browser) -> None:
    driver = browser()
    driver.get(server.http + "/login")
    for _ in range(4):
        # The previous attempt's page, error and all, stays until the new one arrives: wait
        # for it to go first, or the old error passes for the new one.
        previous = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, "email").clear()
        driver.find_element(By.ID, "email").send_keys("carol@example.com")
        driver.find_element(By.ID, "password").send_keys("not the password" + Keys.ENTER)
        wait(driver, LOAD, lambda d, page=previous: is_stale(page), "the answer replaces the page")
        wait(driver, LOAD, lambda d: d.find_elements(By.ID, "form-error"), "an error shows")
    message = driver.find_element(By.ID, "form-error").text
    assert "Too many sign-in attempts. Try again in" in message
    # Focus moved to the message, so a screen reader reads it first.
    assert driver.switch_to.active_element.get_attribute("id") == "form-error"


def test_keyboard_only_sign_in(server: Server, browser: Browser) -> None:
    driver = browser()
    driver.get(server.http + "/login")
    # The email field has the focus on arrival; Tab moves to the password; Enter submits.
    assert driver.switch_to.active_element.get_attribute("id") == "email"
    driver.switch_to.active_element.send_keys("alice@example.com" + Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "password"
    driver.switch_to.active_element.send_keys(PASSWORD + Keys.ENTER)
    wait(driver, LOAD, lambda d: path_of(d) == "/account", "signed in with the keyboard")
    assert driver.find_element(By.TAG_NAME, "main").get_attribute("id") == "main"
    assert driver.find_elements(By.CSS_SELECTOR, "header.top nav[aria-label]")


def test_the_pages_load_no_blocked_or_failing_resources(server: Server, browser: Browser) -> None:
    """The CSP allows everything the pages use: the console shows no violation or error."""
    driver = browser()
    sign_in(driver, server, "root@example.com")
    for path in ("/account", "/admin", "/admin/audit", "/login?next=/admin"):
        driver.get(server.http + path)
        if path in ("/account", "/admin"):
            live(driver)
    logs = driver.get_log("browser")
    problems = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert problems == []


# -- screenshots -----------------------------------------------------------------------------


WIDER_THAN_VIEWPORT = """
return [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > arguments[0] + 1)
  .filter(e => !e.closest('.table-wrap') || e.classList.contains('table-wrap'))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id);
"""


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        for width in (1280, 360):
            metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            height = int(driver.execute_script("return document.documentElement.scrollHeight"))
            metrics["height"] = max(600, min(height, 6000))
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            scroll = driver.execute_script("return document.documentElement.scrollWidth")
            wide = driver.execute_script(WIDER_THAN_VIEWPORT, width)
            assert scroll <= width + 1, f"{name} scrolls sideways at {width} px: {wide}"
            path = ARTIFACTS / f"{name}-{scheme}-{width}.png"
            assert driver.save_screenshot(str(path)), path
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_screenshots_of_each_page(server: Server, browser: Browser) -> None:
    alice, desktop, driver = browser(), browser(), browser()
    sign_in(alice, server, "alice@example.com", device="Alice's phone")
    live(alice)
    sign_in(desktop, server, "root@example.com", device="Office desktop")
    live(desktop)
    driver.get(server.http + "/login")
    screenshot(driver, "login")
    driver.get(server.http + "/signup")
    screenshot(driver, "signup")
    sign_in(driver, server, "root@example.com", device="Laptop")
    live(driver)
    wait(driver, LIVE, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".dot.online")) >= 2, "dots")

    # An API key: created from the page, shown once with a copy button.
    driver.find_element(By.ID, "key-name").send_keys("Deploy bot")
    driver.find_element(By.CSS_SELECTOR, "input[name=scopes][value=profile]").click()
    driver.find_element(By.XPATH, "//button[text()='Create key']").click()
    wait(driver, LOAD, lambda d: d.find_elements(By.ID, "new-key"), "the new key is shown")
    assert driver.switch_to.active_element.get_attribute("id") == "new-key-box"
    secret = driver.find_element(By.ID, "new-key").text
    assert secret.startswith("ww_live_")
    driver.find_element(By.CSS_SELECTOR, "button[data-copy]").click()
    wait(
        driver, LIVE, lambda d: d.find_element(By.CSS_SELECTOR, "[data-copy-status]").text, "copied"
    )
    screenshot(driver, "account-new-key")
    driver.get(server.http + "/account")
    assert secret not in driver.page_source  # shown once
    live(driver)
    screenshot(driver, "account")

    driver.get(server.http + "/admin")
    live(driver)
    wait(
        driver,
        LIVE,
        lambda d: "alice@example.com" in d.find_element(By.ID, "online-list").text,
        "Alice is online",
    )
    screenshot(driver, "admin")
    user = server.users["alice@example.com"]
    driver.get(f"{server.http}/admin/users/{user['id']}")
    screenshot(driver, "admin-user")
    driver.get(server.http + "/admin/audit")
    screenshot(driver, "admin-audit")
    driver.get(server.http + "/admin/users/no-such-user")
    screenshot(driver, "not-found")
    assert len(list(ARTIFACTS.glob("*.png"))) >= 32
