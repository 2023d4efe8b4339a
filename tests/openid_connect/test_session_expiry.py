"""A session that simply runs out (absolute or idle expiry) ends its apps' tokens and tells
the apps with a back-channel logout token, on SQLite and PostgreSQL; a live session, and one
whose idle expiry is only as old as a last-seen write that may still be on its way, are left
alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import ManualClock
from tests.openid_connect.conftest import (
    App,
    LogoutReceiver,
    bare,
    code_for,
    exchange,
    make_app,
    pkce,
)
from watchword.domain.clock import sha256_hex
from watchword.domain.tokens import REVOKED

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class SignedIn:
    browser: Client
    sid: str
    tokens: dict[str, Any]


async def sign_in_to_app(client: Client, app: App, email: str) -> SignedIn:
    """A person signs in (a browser of their own) and the app redeems its code."""
    browser = Client(transport=client._transport, base_url=str(client.base_url))
    browser.container = client.container
    await browser.register(email)
    await browser.login(email)
    verifier, challenge = pkce()
    code = await code_for(browser, app, challenge)
    async with bare(client) as anon:
        answer = await exchange(anon, app, code, verifier)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    sid = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
    return SignedIn(browser, sid, tokens)


async def refresh(client: Client, app: App, refresh_token: str) -> Any:
    async with bare(client) as anon:
        return await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": app.client_id,
            },
        )


async def grants_revoked(client: Client, sid: str) -> list[bool]:
    grants = await client.container.app_stores.grants.for_session(sid)
    return [g.revoked_at is not None for g in grants]


async def refresh_state(client: Client, refresh_token: str) -> str:
    record = await client.container.token_stores.refresh.get_by_hash(sha256_hex(refresh_token))
    assert record is not None
    return record.state


async def expiry_ends_the_apps_tokens_and_tells_the_app(
    client_factory: ClientFactory, clock: ManualClock, receiver: LogoutReceiver, **db: Any
) -> None:
    client = await client_factory(session_lifetime=600, **db)
    app = await make_app(client, first_party=True, backchannel_logout_uri=receiver.url)
    ending = await sign_in_to_app(client, app, "ending@example.com")
    clock.advance(400)
    live = await sign_in_to_app(client, app, "live@example.com")
    # The first session is past its absolute expiry; the second has been quiet for longer
    # than the last-seen margin but far less than its idle timeout: it is live.
    clock.advance(201)

    logout = await receiver.next_token()
    assert logout["sid"] == ending.sid and logout["aud"] == app.client_id
    assert logout["events"] == {EVENT: {}}
    assert await grants_revoked(client, ending.sid) == [True]
    assert await refresh_state(client, ending.tokens["refresh_token"]) == REVOKED
    refused = await refresh(client, app, ending.tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"

    # The live session's app is untouched: no logout token, its grant and refresh token live.
    assert await grants_revoked(client, live.sid) == [False]
    outbox = await client.container.app_stores.logout_outbox.page()
    assert [q.session_id for q in outbox if q.client_id == app.client_id] == [ending.sid]
    assert receiver.received.empty()
    rotated = await refresh(client, app, live.tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text


async def test_an_expired_session_logs_its_apps_out(
    client_factory: ClientFactory, clock: ManualClock, receiver: LogoutReceiver
) -> None:
    await expiry_ends_the_apps_tokens_and_tells_the_app(client_factory, clock, receiver)


@pytest.mark.postgres
async def test_an_expired_session_logs_its_apps_out_on_postgres(
    client_factory: ClientFactory, clock: ManualClock, receiver: LogoutReceiver, postgres_url: str
) -> None:
    await expiry_ends_the_apps_tokens_and_tells_the_app(
        client_factory, clock, receiver, database_url=postgres_url
    )


async def test_an_idle_session_is_logged_out_only_past_the_last_seen_write_margin(
    client_factory: ClientFactory, clock: ManualClock, receiver: LogoutReceiver
) -> None:
    client = await client_factory(session_idle_timeout=60, session_touch_interval=60)
    app = await make_app(client, first_party=True, backchannel_logout_uri=receiver.url)
    idle = await sign_in_to_app(client, app, "idle@example.com")
    await client.container.sessions.flush_touches()
    # The margin the server uses: a touch interval and two touch flushes (5 s each).
    margin = timedelta(seconds=70)
    app_tokens = client.container.app_tokens

    # Stored idle expiry passed, but a last-seen write may still be coming: left alone.
    clock.advance(60 + 69)
    assert await app_tokens.end_with_expired_sessions(margin) == 0
    assert await grants_revoked(client, idle.sid) == [False]
    outbox = await client.container.app_stores.logout_outbox.page()
    assert [q for q in outbox if q.client_id == app.client_id] == []

    clock.advance(2)  # past the idle expiry by more than the margin
    assert await app_tokens.end_with_expired_sessions(margin) == 1
    logout = await receiver.next_token()  # delivered by the sender's loop
    assert logout["sid"] == idle.sid
    assert await grants_revoked(client, idle.sid) == [True]
    assert await refresh_state(client, idle.tokens["refresh_token"]) == REVOKED
    # The app's access token stops now, not at its own expiry.
    async with bare(client) as anon:
        info = await anon.get(
            "/oauth2/userinfo", headers={"Authorization": "Bearer " + idle.tokens["access_token"]}
        )
    assert info.status_code == 401


async def test_a_signed_out_session_tells_its_apps_at_once_not_at_the_next_poll(
    client_factory: ClientFactory, receiver: LogoutReceiver
) -> None:
    """The node that ends a session wakes its sender when the transaction that queued the
    logout commits: with an hour between polls, the app still hears of it now."""
    client = await client_factory(backchannel_logout_poll_interval=3600)
    app = await make_app(client, first_party=True, backchannel_logout_uri=receiver.url)
    signed_in = await sign_in_to_app(client, app, "leaving@example.com")
    assert (await signed_in.browser.post("/v1/auth/logout")).status_code == 200
    logout = await receiver.next_token()
    assert logout["sid"] == signed_in.sid and logout["aud"] == app.client_id
