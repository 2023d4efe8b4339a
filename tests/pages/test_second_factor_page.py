"""The sign-in page asks for the second factor when the account has one, with the same checks
as the API's second step."""

from __future__ import annotations

import re

import httpx
import pyotp

from tests.accounts.test_totp import enrolled
from tests.conftest import ClientFactory
from tests.helpers import ManualClock
from tests.pages.conftest import form_token, page_login

CHALLENGE = re.compile(r'name="challenge" value="([^"]*)"')


async def test_a_password_alone_does_not_sign_a_totp_account_in(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    account = await enrolled(client_factory, clock)
    async with httpx.AsyncClient(
        transport=account.client._transport, base_url=str(account.client.base_url)
    ) as browser:
        step = await page_login(browser, account.email)
        assert step.status_code == 200
        assert "Authentication code" in step.text
        assert "set-cookie" not in step.headers or "watchword_session" not in step.headers.get(
            "set-cookie", ""
        )
        assert (await browser.get("/account")).status_code in (303, 401)

        challenge = CHALLENGE.search(step.text)
        assert challenge is not None
        wrong = await browser.post(
            "/login/code",
            data={
                "csrf_token": form_token(step.text),
                "challenge": challenge.group(1),
                "code": "000000",
            },
        )
        assert wrong.status_code == 401
        assert "incorrect" in wrong.text

        no_token = await browser.post(
            "/login/code",
            data={"challenge": challenge.group(1), "code": account.code(clock)},
        )
        assert no_token.status_code == 403

        clock.advance(30)  # a fresh time step: the enrolment used the current one
        done = await browser.post(
            "/login/code",
            data={
                "csrf_token": form_token(wrong.text),
                "challenge": challenge.group(1),
                "code": pyotp.TOTP(account.secret).at(clock.now()),
            },
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/account"
        me = (await browser.get("/v1/me")).json()
        assert "mfa" in me["authentication"]["amr"]
