"""The code flow refuses what RFC 6749, RFC 7636 and RFC 9700 say it must: unregistered
redirect URIs never redirect, PKCE is S256 and required of public clients, a code is single
use and bound to its client, redirect URI and verifier."""

from __future__ import annotations

import html
import re

import jwt
import pytest

from tests.conftest import Client
from tests.helpers import PASSWORD
from tests.openid_connect.conftest import (
    REDIRECT,
    authorize,
    bare,
    code_for,
    exchange,
    make_app,
    pkce,
    query_of,
)
from tests.pages.conftest import form_token
from watchword.domain.errors import InvalidInput
from watchword.services.clients import AppRegistration
from watchword.services.context import CLI


@pytest.fixture
async def alice(client: Client) -> Client:
    await client.register()
    await client.login()
    return client


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9999/elsewhere",  # not registered
        REDIRECT + "/extra",  # extra path
        REDIRECT + "?next=https://evil.example",  # extra query
        "http://127.0.0.1:9999/CALLBACK",  # not the exact string
        "https://evil.example/callback",
    ],
)
async def test_a_redirect_uri_not_registered_gets_an_error_page_and_no_redirect(
    alice: Client, redirect_uri: str
) -> None:
    app = await make_app(alice, first_party=True)
    _, challenge = pkce()
    response = await authorize(
        alice,
        app,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "redirect_uri is not one this app registered" in response.text


async def test_an_unknown_client_gets_an_error_page(alice: Client) -> None:
    app = await make_app(alice)
    app.client_id = "wwc_" + "0" * 24
    response = await authorize(alice, app)
    assert response.status_code == 400 and "location" not in response.headers


async def test_a_public_client_without_pkce_is_sent_back_with_invalid_request(
    alice: Client,
) -> None:
    app = await make_app(alice, first_party=True)
    response = await authorize(alice, app, state="keep-me")
    assert response.status_code == 302
    answer = query_of(response.headers["location"])
    assert answer["error"] == "invalid_request" and "PKCE" in answer["error_description"]
    assert answer["state"] == "keep-me"
    assert "code" not in answer


@pytest.mark.parametrize("method", ["plain", None])
async def test_pkce_plain_is_refused(alice: Client, method: str | None) -> None:
    app = await make_app(alice, first_party=True)
    verifier, _ = pkce()
    params = {"code_challenge": verifier}  # plain: the challenge is the verifier itself
    if method:
        params["code_challenge_method"] = method
    response = await authorize(alice, app, **params)
    answer = query_of(response.headers["location"])
    assert answer["error"] == "invalid_request" and "S256" in answer["error_description"]


async def test_the_implicit_flow_is_refused(alice: Client) -> None:
    app = await make_app(alice, first_party=True)
    _, challenge = pkce()
    response = await authorize(
        alice, app, response_type="token", code_challenge=challenge, code_challenge_method="S256"
    )
    assert query_of(response.headers["location"])["error"] == "unsupported_response_type"


async def test_a_wrong_verifier_gets_no_tokens(alice: Client) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        wrong = await exchange(anon, app, code, pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert "code_verifier does not match" in wrong.json()["error_description"]
        missing = await exchange(anon, app, code, None)
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
        # The right verifier still works: a failed attempt does not spend the code.
        right = await exchange(anon, app, code, verifier)
        assert right.status_code == 200, right.text


async def test_code_reuse_revokes_the_tokens_issued_from_it_but_not_the_session(
    alice: Client,
) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        first = await exchange(anon, app, code, verifier)
        assert first.status_code == 200, first.text
        tokens = first.json()
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        assert (await anon.get("/oauth2/userinfo", headers=bearer)).status_code == 200
        again = await exchange(anon, app, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert "already used" in again.json()["error_description"]
        refused = await anon.get("/oauth2/userinfo", headers=bearer)
        assert refused.status_code == 401, refused.text
        refresh = await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    # The person's own session is untouched.
    assert (await alice.get("/v1/me")).status_code == 200


async def test_a_code_of_another_client_is_refused(alice: Client) -> None:
    mine = await make_app(alice, first_party=True)
    other = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, mine, challenge)
    async with bare(alice) as anon:
        stolen = await exchange(anon, other, code, verifier)
        assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
        assert "another client" in stolen.json()["error_description"]


async def test_the_redirect_uri_must_match_the_request_at_the_token_endpoint(
    alice: Client,
) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        response = await exchange(anon, app, code, verifier, redirect_uri=REDIRECT + "/x")
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_a_code_expires_after_a_minute(alice: Client, clock: object) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    clock.advance(61)  # type: ignore[attr-defined]
    async with bare(alice) as anon:
        response = await exchange(anon, app, code, verifier)
        assert response.status_code == 400 and "expired" in response.json()["error_description"]


async def test_state_and_nonce_are_echoed(alice: Client) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    response = await authorize(
        alice,
        app,
        state="s-123",
        nonce="n-456",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    answer = query_of(response.headers["location"])
    assert answer["state"] == "s-123"
    assert answer["iss"] == alice.container.settings.issuer  # RFC 9207
    async with bare(alice) as anon:
        tokens = (await exchange(anon, app, answer["code"], verifier)).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "n-456" and claims["aud"] == app.client_id


async def test_prompt_none_without_a_session_answers_login_required(client: Client) -> None:
    await client.register()
    app = await make_app(client, first_party=True)
    _, challenge = pkce()
    response = await authorize(
        client,
        app,
        prompt="none",
        state="s-1",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert response.status_code == 302
    answer = query_of(response.headers["location"])
    assert answer == {
        "error": "login_required",
        "error_description": "Nobody is signed in.",
        "state": "s-1",
        "iss": client.container.settings.issuer,
    }


async def test_without_a_session_the_browser_goes_to_the_sign_in_page_and_back(
    client: Client,
) -> None:
    await client.register()
    app = await make_app(client, first_party=True)
    _, challenge = pkce()
    response = await authorize(
        client,
        app,
        code_challenge=challenge,
        code_challenge_method="S256",
        login_hint="alice@example.com",
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/login?next=%2Foauth2%2Fauthorize%3F")
    assert "login_hint=alice%40example.com" in location
    page = await client.get(location)
    assert 'value="alice@example.com"' in page.text
    back = query_of(location)["next"]
    assert "ww_from_login=1" in back
    signed_in = await client.post(
        "/login",
        data={
            "csrf_token": form_token(page.text),
            "email": "alice@example.com",
            "password": PASSWORD,
            "next": back,
        },
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == back
    onward = await client.get(back)
    assert onward.status_code == 200
    link = html.unescape(re.search(r'href="([^"]+)" id="continue-link"', onward.text)[1])
    assert link.startswith(app.redirect_uri + "?code=")


async def test_a_public_client_cannot_use_a_secret_only_grant(client: Client) -> None:
    with pytest.raises(InvalidInput, match="public client"):
        await client.container.clients.create(
            name="spa",
            scopes="profile",
            ctx=CLI,
            app=AppRegistration.parse(client_type="public", grant_types="client_credentials"),
        )
    app = await make_app(client)
    async with bare(client) as anon:
        response = await anon.post(
            "/oauth2/token", data={"grant_type": "client_credentials", "client_id": app.client_id}
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"


async def test_a_confidential_client_must_authenticate_at_the_token_endpoint(
    alice: Client,
) -> None:
    app = await make_app(alice, client_type="confidential", first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        unauthenticated = await exchange(anon, app, code, verifier)
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["error"] == "invalid_client"
        authenticated = await exchange(anon, app, code, verifier, client_secret=app.secret)
        assert authenticated.status_code == 200, authenticated.text


async def test_app_and_person_refresh_tokens_do_not_cross(alice: Client) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    code = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        tokens = (await exchange(anon, app, code, verifier)).json()
        own = await anon.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert own.status_code in (400, 401), own.text
        person = await anon.post(
            "/v1/auth/login",
            json={
                "email": "alice@example.com",
                "password": "correct horse battery staple",
                "mode": "token",
            },
        )
        assert person.status_code == 200, person.text
        as_app = await anon.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": person.json()["refresh_token"],
                "client_id": app.client_id,
            },
        )
        assert as_app.status_code == 400 and as_app.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://app.example/cb", "uses http"),
        ("https://app.example/cb#frag", "fragment"),
        ("https://*.example/cb", "wildcard"),
        ("https://user:pw@app.example/cb", "credentials"),
        ("app.example/cb", "absolute https"),
    ],
)
async def test_redirect_uris_are_checked_at_registration(
    client: Client, uri: str, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        await make_app(client, redirect_uri=uri)


async def test_unredeemed_codes_are_swept_and_redeemed_grants_stay(
    alice: Client, clock: object
) -> None:
    app = await make_app(alice, first_party=True)
    verifier, challenge = pkce()
    await code_for(alice, app, challenge)  # never redeemed
    kept = await code_for(alice, app, challenge)
    async with bare(alice) as anon:
        assert (await exchange(anon, app, kept, verifier)).status_code == 200
    clock.advance(12 * 60)  # type: ignore[attr-defined]
    assert await alice.container.app_tokens.sweep() == 1
    assert await alice.container.app_tokens.sweep() == 0


async def test_prompt_login_and_max_age_ask_for_a_fresh_sign_in(
    alice: Client, clock: object
) -> None:
    app = await make_app(alice, first_party=True)
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    clock.advance(5)  # type: ignore[attr-defined]
    asked = await authorize(alice, app, prompt="login", **pkce_params)
    assert asked.status_code == 303
    location = asked.headers["location"]
    assert location.startswith("/login?next=") and "again=1" in location
    back = query_of(location)["next"]
    assert "prompt" not in back and "ww_login_after=" in back
    # Coming back without signing in again is not enough.
    still = await alice.get(back)
    assert still.status_code == 303 and still.headers["location"].startswith("/login?")
    page = await alice.get("/login?again=1")
    assert page.status_code == 200  # shown although signed in
    signed_in = await alice.post(
        "/login",
        data={
            # The sign-in form's own (pre-session) token, not the sign-out form's.
            "csrf_token": form_token(page.text.split('action="/login"', 1)[1]),
            "email": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    fresh = await alice.get(back)
    # Back from the sign-in form: a page that moves on by itself (see continue.html).
    assert fresh.status_code == 200 and 'http-equiv="refresh"' in fresh.text
    assert fresh.headers["referrer-policy"] == "no-referrer"
    onward = html.unescape(re.search(r'href="([^"]+)" id="continue-link"', fresh.text)[1])
    assert onward.startswith(app.redirect_uri + "?") and "code" in query_of(onward)

    clock.advance(120)  # type: ignore[attr-defined]
    too_old = await authorize(alice, app, max_age="60", **pkce_params)
    assert too_old.status_code == 303 and too_old.headers["location"].startswith("/login?")
    silent = await authorize(alice, app, max_age="60", prompt="none", **pkce_params)
    assert query_of(silent.headers["location"])["error"] == "login_required"
    recent = await authorize(alice, app, max_age="600", **pkce_params)
    assert recent.status_code == 302 and "code" in query_of(recent.headers["location"])
