"""An app's refresh token follows the person's own rules: a retry within the reuse grace
window (the app lost the answer to its refresh) gets the live pair again; a retry after it,
or of a token older than the live one's predecessor, is reuse and ends the session."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.openid_connect.conftest import App, bare, code_for, exchange, make_app, pkce


async def signed_in(client: Client) -> tuple[App, dict[str, Any]]:
    await client.register()
    await client.login()
    app = await make_app(client, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        answer = await exchange(anon, app, code, verifier)
    assert answer.status_code == 200, answer.text
    return app, answer.json()


async def refresh(client: Client, app: App, refresh_token: str) -> httpx.Response:
    async with bare(client) as anon:
        return await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": app.client_id,
            },
        )


async def userinfo(client: Client, access_token: str) -> int:
    async with bare(client) as anon:
        response = await anon.get(
            "/oauth2/userinfo", headers={"Authorization": "Bearer " + access_token}
        )
    return response.status_code


async def retry_within_grace_gets_the_live_pair(client: Client, clock: ManualClock) -> None:
    app, tokens = await signed_in(client)
    first = await refresh(client, app, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    clock.advance(client.container.tokens.reuse_grace - 1)
    again = await refresh(client, app, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    live, repeated = first.json(), again.json()
    for name in ("access_token", "refresh_token", "id_token", "scope", "token_type"):
        assert repeated[name] == live[name], name
    assert repeated["expires_in"] < live["expires_in"]  # the same token, later
    # Nothing was ended: the browser session, the app's access token and its live refresh.
    assert (await client.get("/v1/me")).status_code == 200
    assert await userinfo(client, live["access_token"]) == 200
    onward = await refresh(client, app, live["refresh_token"])
    assert onward.status_code == 200, onward.text


async def test_a_retried_app_refresh_within_the_grace_window_gets_the_live_pair_again(
    client: Client, clock: ManualClock
) -> None:
    await retry_within_grace_gets_the_live_pair(client, clock)


@pytest.mark.postgres
async def test_a_retried_app_refresh_within_the_grace_window_on_postgres(
    client_factory: ClientFactory, clock: ManualClock, postgres_url: str
) -> None:
    await retry_within_grace_gets_the_live_pair(
        await client_factory(database_url=postgres_url), clock
    )


async def assert_session_ended(client: Client, reused: httpx.Response, live: str) -> None:
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "session has been revoked" in reused.json()["error_description"]
    assert (await client.get("/v1/me")).status_code == 401
    assert await userinfo(client, live) == 401


async def test_an_app_refresh_retried_after_the_grace_window_is_reuse_and_ends_the_session(
    client: Client, clock: ManualClock
) -> None:
    app, tokens = await signed_in(client)
    first = await refresh(client, app, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    clock.advance(client.container.tokens.reuse_grace + 1)
    reused = await refresh(client, app, tokens["refresh_token"])
    await assert_session_ended(client, reused, first.json()["access_token"])


async def test_an_app_refresh_token_older_than_the_live_ones_predecessor_is_reuse(
    client: Client,
) -> None:
    app, tokens = await signed_in(client)
    second = await refresh(client, app, tokens["refresh_token"])
    third = await refresh(client, app, second.json()["refresh_token"])
    assert third.status_code == 200, third.text
    # Within the window, but its successor was itself rotated: walking the family back.
    reused = await refresh(client, app, tokens["refresh_token"])
    await assert_session_ended(client, reused, third.json()["access_token"])


async def test_with_no_grace_window_an_immediate_app_refresh_retry_is_reuse(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(refresh_reuse_grace=0)
    app, tokens = await signed_in(client)
    first = await refresh(client, app, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    reused = await refresh(client, app, tokens["refresh_token"])
    await assert_session_ended(client, reused, first.json()["access_token"])
