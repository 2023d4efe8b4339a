"""RP-initiated logout: the app's ``id_token_hint`` ends the browser's session, the browser
goes back only to a registered ``post_logout_redirect_uri`` (never an open redirect), and the
apps that signed in through the session are told by back-channel logout."""

from __future__ import annotations

import html
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import Client
from tests.openid_connect.conftest import App, bare, code_for, exchange, make_app, pkce, query_of

AFTER = "https://photos.example/signed-out"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
async def signed_in(client: Client) -> tuple[Client, App, dict[str, Any]]:
    await client.register()
    await client.login()
    app = await make_app(
        client,
        first_party=True,
        post_logout_redirect_uris=[AFTER],
        backchannel_logout_uri="https://photos.example/backchannel",
    )
    verifier, challenge = pkce()
    code = await code_for(client, app, challenge)
    async with bare(client) as anon:
        tokens = (await exchange(anon, app, code, verifier)).json()
    return client, app, tokens


async def test_a_hint_of_the_browsers_session_signs_out_and_returns_to_the_app(
    signed_in: tuple[Client, App, dict[str, Any]],
) -> None:
    client, app, tokens = signed_in
    response = await client.get(
        "/oauth2/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": AFTER,
            "state": "bye-1",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == AFTER + "?state=bye-1"
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert (await client.get("/v1/me")).status_code == 401
    async with bare(client) as anon:
        info = await anon.get(
            "/oauth2/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}
        )
        assert info.status_code == 401
    sid = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
    queued = await client.container.app_stores.logout_outbox.page(unsent_only=True)
    assert [(q.client_id, q.session_id) for q in queued] == [(app.client_id, sid)]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        AFTER + "/more",
        AFTER + "?next=https://evil.example",
        "//evil.example",
    ],
)
async def test_an_unregistered_post_logout_redirect_uri_is_an_error_page_not_a_redirect(
    signed_in: tuple[Client, App, dict[str, Any]], target: str
) -> None:
    client, _, tokens = signed_in
    response = await client.get(
        "/oauth2/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": target},
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert (await client.get("/v1/me")).status_code == 200


async def test_a_target_without_a_hint_or_client_is_refused(
    signed_in: tuple[Client, App, dict[str, Any]],
) -> None:
    client, _, _ = signed_in
    response = await client.get("/oauth2/logout", params={"post_logout_redirect_uri": AFTER})
    assert response.status_code == 400 and "location" not in response.headers


async def test_a_forged_hint_is_refused(signed_in: tuple[Client, App, dict[str, Any]]) -> None:
    client, _, tokens = signed_in
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(tokens["id_token"])["kid"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})
    response = await client.get(
        "/oauth2/logout",
        params={"id_token_hint": forged, "post_logout_redirect_uri": AFTER},
    )
    assert response.status_code == 400 and "location" not in response.headers
    assert (await client.get("/v1/me")).status_code == 200


async def test_without_a_hint_the_person_confirms_with_the_forms_token(
    signed_in: tuple[Client, App, dict[str, Any]],
) -> None:
    client, app, _ = signed_in
    page = await client.get(
        "/oauth2/logout",
        params={"client_id": app.client_id, "post_logout_redirect_uri": AFTER, "state": "s"},
    )
    assert page.status_code == 200 and "logout-confirm" in page.text
    assert (await client.get("/v1/me")).status_code == 200  # a bare link signs nobody out
    form = {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}
    without_token = {k: v for k, v in form.items() if k != "csrf_token"}
    csrf = client.headers.pop("X-CSRF-Token")
    forged = await client.post("/oauth2/logout", data=without_token)
    assert forged.status_code == 403
    assert (await client.get("/v1/me", headers={"X-CSRF-Token": csrf})).status_code == 200
    confirmed = await client.post("/oauth2/logout", data=form)
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == AFTER + "?state=s"
    assert (await client.get("/v1/me")).status_code == 401


async def test_without_a_session_the_browser_just_goes_back(client: Client) -> None:
    app = await make_app(client, first_party=True, post_logout_redirect_uris=[AFTER])
    response = await client.get(
        "/oauth2/logout",
        params={"client_id": app.client_id, "post_logout_redirect_uri": AFTER, "state": "z"},
    )
    assert response.status_code == 303
    assert query_of(response.headers["location"]) == {"state": "z"}
