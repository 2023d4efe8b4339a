"""One session, every app: an app's tokens ride on the Watchword session that signed the
person in (``sid``), so every way that session ends ends them too. And the consent page:
asked once per person and app, skipped for first-party apps."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.conftest import Client
from tests.helpers import PASSWORD, ManualClock
from tests.openid_connect.conftest import (
    App,
    authorize,
    bare,
    code_for,
    exchange,
    make_app,
    pkce,
    query_of,
)
from watchword.domain.sessions import RevokeReason
from watchword.services.context import CLI

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


async def signed_in_app(client: Client) -> tuple[App, dict[str, Any]]:
    """alice signed in (cookie), a first-party app holding her tokens."""
    await client.register()
    await client.login()
    app = await make_app(client, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        response = await exchange(anon, app, code, verifier)
    assert response.status_code == 200, response.text
    return app, response.json()


async def app_tokens_work(client: Client, app: App, tokens: dict[str, Any]) -> tuple[int, int]:
    """(status of UserInfo with the access token, status of a refresh)."""
    async with bare(client) as anon:
        info = await anon.get(
            "/oauth2/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}
        )
        refresh = await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": app.client_id,
            },
        )
    return info.status_code, refresh.status_code


async def _logout(client: Client, sid: str) -> None:
    assert (await client.post("/v1/auth/logout")).status_code in (200, 204)


async def _revoke_cli(client: Client, sid: str) -> None:
    await client.container.sessions.revoke(sid, RevokeReason.REVOKED, CLI, actor_id="cli")


async def _disable(client: Client, sid: str) -> None:
    session = await client.container.sessions.get(sid)
    assert session is not None
    await client.container.accounts.set_disabled(session.user_id, True, CLI, actor_id="cli")


async def _password_reset(client: Client, sid: str) -> None:
    mail = await client.container.lifecycle.send_reset("alice@example.com", CLI, actor_id="cli")
    token = parse_qs(urlsplit(re.findall(r"https?://\S+", mail.text)[0]).query)["token"][0]
    await client.container.lifecycle.reset_password(token, "another " + PASSWORD, CLI)


@pytest.mark.parametrize(
    "end_session",
    [_logout, _revoke_cli, _disable, _password_reset],
    ids=["logout", "revoke", "disable", "password-reset"],
)
async def test_ending_the_session_ends_the_apps_tokens(
    client: Client, end_session: Callable[[Client, str], Awaitable[None]]
) -> None:
    app, tokens = await signed_in_app(client)
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    id_sid = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
    assert sid == id_sid
    assert await app_tokens_work(client, app, tokens) == (200, 200)
    # The refresh above rotated the token: use the new pair from here on.
    app2, fresh = app, await _fresh_pair(client, app)
    await end_session(client, sid)
    info, refresh = await app_tokens_work(client, app2, fresh)
    assert info == 401
    assert refresh == 400


async def _fresh_pair(client: Client, app: App) -> dict[str, Any]:
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        response = await exchange(anon, app, code, verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_reusing_an_apps_refresh_token_ends_the_session_and_every_app(
    client: Client, clock: ManualClock
) -> None:
    app, tokens = await signed_in_app(client)
    other = await _fresh_pair(client, app)
    async with bare(client) as anon:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
        }
        assert (await anon.post("/oauth2/token", data=form)).status_code == 200
        clock.advance(client.container.tokens.reuse_grace + 1)  # past the retry window
        reused = await anon.post("/oauth2/token", data=form)
        assert reused.status_code == 400
        assert "session has been revoked" in reused.json()["error_description"]
    # The person's browser session ended, and with it the other grant of the same session.
    assert (await client.get("/v1/me")).status_code == 401
    assert (await app_tokens_work(client, app, other))[0] == 401


async def test_revoking_an_apps_refresh_token_ends_only_that_grant(client: Client) -> None:
    app, tokens = await signed_in_app(client)
    async with bare(client) as anon:
        response = await anon.post("/oauth2/revoke", data={"token": tokens["refresh_token"]})
        assert response.status_code == 200
    assert await app_tokens_work(client, app, tokens) == (401, 400)
    assert (await client.get("/v1/me")).status_code == 200


async def consent_form(page: httpx.Response) -> dict[str, str]:
    assert page.status_code == 200, page.text
    assert "consent-allow" in page.text
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}


async def test_consent_is_asked_once_and_remembered(client: Client) -> None:
    await client.register()
    await client.login()
    app = await make_app(client, client_type="confidential")
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    silent = await authorize(client, app, prompt="none", state="s0", **pkce_params)
    assert query_of(silent.headers["location"])["error"] == "consent_required"

    page = await authorize(client, app, state="s1", **pkce_params)
    assert "See your email address" in page.text
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' http://127.0.0.1:9999" in csp
    form = await consent_form(page)
    denied = await client.post("/oauth2/authorize", data={**form, "decision": "deny"})
    answer = query_of(denied.headers["location"])
    assert answer["error"] == "access_denied" and answer["state"] == "s1"

    page = await authorize(client, app, state="s2", scope="openid", **pkce_params)
    allowed = await client.post(
        "/oauth2/authorize", data={**(await consent_form(page)), "decision": "allow"}
    )
    assert allowed.status_code == 303
    answer = query_of(allowed.headers["location"])
    assert answer["state"] == "s2" and answer["code"].startswith("ww_ac_")

    again = await authorize(client, app, state="s3", scope="openid", **pkce_params)
    assert again.status_code == 302 and "code" in query_of(again.headers["location"])
    more = await authorize(client, app, state="s4", scope="openid email", **pkce_params)
    assert more.status_code == 200 and "See your email address" in more.text
    asked = await authorize(client, app, prompt="consent", **pkce_params)
    assert asked.status_code == 200 and "consent-allow" in asked.text


async def test_the_consent_form_needs_its_csrf_token(client: Client) -> None:
    await client.register()
    await client.login()
    app = await make_app(client)
    _, challenge = pkce()
    page = await authorize(client, app, code_challenge=challenge, code_challenge_method="S256")
    form = await consent_form(page)
    form.pop("csrf_token")
    client.headers.pop("X-CSRF-Token")
    forged = await client.post("/oauth2/authorize", data={**form, "decision": "allow"})
    assert forged.status_code == 403
    assert "location" not in forged.headers


async def test_the_account_page_lists_connected_apps_and_disconnects_them(
    client: Client,
) -> None:
    app, tokens = await signed_in_app(client)
    page = await client.get("/account")
    assert page.status_code == 200
    assert f'data-client="{app.client_id}"' in page.text and "Photos" in page.text
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert form_token is not None
    client.headers.pop("X-CSRF-Token")
    forged = await client.post(f"/account/apps/{app.client_id}/disconnect")
    assert forged.status_code == 403
    assert (await app_tokens_work(client, app, tokens))[0] == 200
    done = await client.post(
        f"/account/apps/{app.client_id}/disconnect", data={"csrf_token": form_token.group(1)}
    )
    assert done.status_code == 303 and done.headers["location"] == "/account#apps"
    assert await app_tokens_work(client, app, tokens) == (401, 400)
    after = await client.get("/account")
    assert f'data-client="{app.client_id}"' not in after.text
    assert (await client.get("/v1/me")).status_code == 200  # the person stays signed in


async def test_disabling_an_app_stops_its_tokens(client: Client) -> None:
    app, tokens = await signed_in_app(client)
    await client.container.clients.set_disabled(app.client_id, True, CLI, actor_id="cli")
    info, refresh = await app_tokens_work(client, app, tokens)
    assert info == 401
    assert refresh == 401  # the client itself is refused (invalid_client)
    assert (await client.get("/v1/me")).status_code == 200
