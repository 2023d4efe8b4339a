"""A back-channel logout that the app refuses stays queued, with its error, and goes out again
after its backoff, with the same logout token id; nothing is dropped."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

import httpx
import jwt

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.openid_connect.conftest import bare, code_for, exchange, make_app, pkce
from watchword.domain.app_grants import PendingLogout
from watchword.domain.sessions import RevokeReason
from watchword.services.context import CLI

ENDPOINT = "https://rp.example/logout"


async def only_logout(client: Client) -> PendingLogout:
    rows = await client.container.app_stores.logout_outbox.page()
    assert len(rows) == 1
    return rows[0]


async def test_a_refused_logout_is_kept_with_its_error_and_delivered_after_backoff(
    client: Client, clock: ManualClock
) -> None:
    await client.register()
    await client.login()
    app = await make_app(
        client, client_type="confidential", first_party=True, backchannel_logout_uri=ENDPOINT
    )
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        assert (await exchange(anon, app, code, verifier, client_secret=app.secret)).is_success
    answers = [503, 200]
    token_ids: list[str] = []

    def the_app(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == ENDPOINT
        token = parse_qs(request.content.decode())["logout_token"][0]
        token_ids.append(jwt.decode(token, options={"verify_signature": False})["jti"])
        return httpx.Response(answers.pop(0))

    container = client.container
    container.backchannel._transport = httpx.MockTransport(the_app)
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    await container.sessions.revoke(session_id, RevokeReason.REVOKED, CLI)

    deadline = time.monotonic() + 15  # a bound on the wait for the background sender
    while (row := await only_logout(client)).attempts == 0:
        assert time.monotonic() < deadline, "the sender never tried the logout"
        await asyncio.sleep(0.02)
    assert row.sent_at is None and row.last_error == "HTTP 503"
    assert row.next_attempt_at > clock.now()  # backed off, not retried at once
    assert await container.backchannel.deliver_due() == 0  # not due yet

    clock.advance(container.settings.backchannel_logout_retry_max)
    assert await container.backchannel.deliver_due() == 1
    row = await only_logout(client)
    assert row.sent_at is not None and row.last_error is None
    assert token_ids == [row.id, row.id]  # the same logout, told again
