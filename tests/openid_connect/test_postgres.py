"""The stores the code flow writes, on the real PostgreSQL: single-use codes under a race,
consents, app refresh rotation and reuse, and the back-channel logout outbox."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import Client, ClientFactory
from tests.openid_connect.conftest import (
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

pytestmark = pytest.mark.postgres


async def person(client_factory: ClientFactory, postgres_url: str) -> tuple[Client, str]:
    client = await client_factory(database_url=postgres_url)
    email = f"pg-{uuid.uuid4().hex[:8]}@example.com"
    await client.register(email)
    await client.login(email)
    return client, email


async def test_concurrent_redemptions_of_one_code_leave_no_usable_tokens_on_postgres(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client, _ = await person(client_factory, postgres_url)
    app = await make_app(client, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        answers = await asyncio.gather(*(exchange(anon, app, code, verifier) for _ in range(6)))
        # One redemption wins the code; the others are a reuse of it, which revokes what the
        # code opened (RFC 6749 4.1.2), the winner's tokens included, even before it answers.
        assert sum(a.status_code == 200 for a in answers) <= 1, [a.text for a in answers]
        assert sum(a.status_code == 400 for a in answers) >= 5
        for answer in answers:
            if answer.status_code == 200:
                info = await anon.get(
                    "/oauth2/userinfo",
                    headers={"Authorization": "Bearer " + answer.json()["access_token"]},
                )
                assert info.status_code == 401
            else:
                assert answer.json()["error"] == "invalid_grant"
        assert (
            await client.container.app_stores.grants.for_user(
                (await client.get("/v1/me")).json()["user"]["id"]
            )
            == []
        )


async def test_consent_rotation_reuse_and_logout_outbox_on_postgres(
    client_factory: ClientFactory, postgres_url: str
) -> None:
    client, _ = await person(client_factory, postgres_url)
    app = await make_app(
        client, client_type="confidential", backchannel_logout_uri="https://rp.example/logout"
    )
    verifier, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    page = await authorize(client, app, **pkce_params)
    assert page.status_code == 200 and "consent-allow" in page.text
    await client.container.authorization.remember_consent(
        await client.container.authorization.check_request(
            {
                "response_type": "code",
                "client_id": app.client_id,
                "redirect_uri": app.redirect_uri,
                "scope": "openid profile email",
                **pkce_params,
            }
        ),
        (await client.get("/v1/me")).json()["user"]["id"],
        CLI,
    )
    remembered = await authorize(client, app, **pkce_params)
    assert remembered.status_code == 302
    code = query_of(remembered.headers["location"])["code"]
    async with bare(client) as anon:
        tokens = (await exchange(anon, app, code, verifier, client_secret=app.secret)).json()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
            "client_secret": app.secret,
        }
        rotated = await anon.post("/oauth2/token", data=form)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    me = (await client.get("/v1/me")).json()
    sid = me["session"]["id"]
    await client.container.sessions.revoke(sid, RevokeReason.REVOKED, CLI)
    queued = await client.container.app_stores.logout_outbox.page(unsent_only=True)
    mine = [q for q in queued if q.client_id == app.client_id]
    assert len(mine) == 1
    assert mine[0].session_id == sid and mine[0].uri == "https://rp.example/logout"
