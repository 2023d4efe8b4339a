"""The account page's second factors: TOTP enrolment with its QR code and the recovery codes
shown once, passkeys listed and removed, the enrolment-only page of a role that needs a
second factor, and the sign-in pages' passkey steps."""

from __future__ import annotations

import re

import httpx
import pyotp

from tests.accounts.authenticator import SoftwareAuthenticator
from tests.accounts.test_passkeys import ORIGIN, PUBLIC_URL, RP_ID, add_passkey
from tests.conftest import ClientFactory
from tests.helpers import ManualClock
from tests.pages.conftest import make_admin, page_login, signed_in_page

SECRET = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')


async def test_totp_enrolment_shows_the_qr_code_then_the_recovery_codes_once(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory()
    await client.register()
    await client.login()
    html, token = await signed_in_page(client)
    assert 'id="factors"' in html and "Set up an authenticator app" in html

    started = await client.post("/account/mfa/totp", data={"csrf_token": token})
    assert started.status_code == 200, started.text
    assert "<svg" in started.text and "QR code" in started.text
    found = SECRET.search(started.text)
    assert found is not None
    secret = found.group(1)
    assert started.headers["cache-control"].startswith("no-store")

    wrong = await client.post(
        "/account/mfa/totp/confirm", data={"csrf_token": token, "code": "12345x"}
    )
    assert wrong.status_code == 400 and "incorrect" in wrong.text
    confirmed = await client.post(
        "/account/mfa/totp/confirm",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = re.findall(r"<li><code>([A-Z2-7-]{35})</code></li>", confirmed.text)
    assert len(codes) == 10
    again, _ = await signed_in_page(client)
    assert "10 recovery codes left" in again and codes[0] not in again  # shown once

    forged = await client.post(
        "/account/mfa/totp/remove", data={}, headers={"X-CSRF-Token": "not-the-token"}
    )
    assert forged.status_code == 403
    clock.advance(301)
    stale = await client.post("/account/mfa/totp/remove", data={"csrf_token": token})
    assert stale.status_code == 401 and "confirm your password" in stale.text
    assert 'name="code"' in stale.text  # the step-up asks for the app's code too
    assert (await client.get("/v1/me/mfa")).json()["totp"] is True


async def test_passkeys_are_listed_and_removed_on_the_account_page(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(public_url=PUBLIC_URL)
    await client.register()
    await client.login()
    passkey = await add_passkey(client, SoftwareAuthenticator(ORIGIN, RP_ID), name="Work key")
    html, token = await signed_in_page(client)
    assert "Work key" in html and 'id="passkey-list"' in html
    assert "data-passkey-add" in html and "/assets/passkeys.js" in html
    removed = await client.post(
        f"/account/passkeys/{passkey['id']}/remove", data={"csrf_token": token}
    )
    assert removed.status_code == 303
    assert (await client.get("/v1/me/passkeys")).json()["passkeys"] == []
    html, _ = await signed_in_page(client, removed.headers["location"])
    assert "The passkey was removed" in html and "Work key" not in html


async def test_a_role_that_needs_a_second_factor_sees_only_enrolment(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(mfa_required_roles="admin")
    await make_admin(client)
    await client.login("root@example.com")
    html, token = await signed_in_page(client)
    assert "Your role needs a second factor" in html
    assert "Your devices" not in html and "API keys" not in html
    assert (await client.get("/account/devices")).status_code == 403
    assert (await client.get("/admin")).status_code == 403

    started = await client.post("/account/mfa/totp", data={"csrf_token": token})
    secret = SECRET.search(started.text)
    assert secret is not None
    done = await client.post(
        "/account/mfa/totp/confirm",
        data={"csrf_token": token, "code": pyotp.TOTP(secret.group(1)).at(clock.now())},
    )
    assert done.status_code == 200
    html, _ = await signed_in_page(client)
    assert "Your devices" in html and "Your role needs a second factor" not in html


async def test_the_sign_in_pages_offer_passkeys(client_factory: ClientFactory) -> None:
    client = await client_factory(public_url=PUBLIC_URL)
    await client.register()
    await client.login()
    await add_passkey(client, SoftwareAuthenticator(ORIGIN, RP_ID))
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as b:
        login = await b.get("/login")
        assert "data-passkey-sign-in" in login.text and "/assets/passkeys.js" in login.text
        step = await page_login(b)
        assert step.status_code == 200
        # A passkey is this account's only factor: no code form, the passkey step instead.
        assert "data-passkey-second-factor" in step.text
        assert 'name="code"' not in step.text
        challenge = re.search(r'data-challenge="([^"]+)"', step.text)
        assert challenge is not None
        options = await b.post(
            "/v1/auth/mfa/passkey/options", json={"challenge": challenge.group(1)}
        )
        assert options.status_code == 200 and options.json()["allowCredentials"]
        assert (await b.get("/assets/passkeys.js")).status_code == 200
