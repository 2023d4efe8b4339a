"""An independent relying party against a real `watchword serve`: Authlib's OAuth 2.0 client
over httpx runs the code flow (PKCE S256, nonce, state), verifies the ID token with joserfc
from the published JWKS, calls UserInfo, refreshes, and receives a signed back-channel logout
token at its own small HTTP server when the session is revoked from the command line.

Every wait is bounded (``WITHIN``), a ceiling for a loaded machine, never a measured result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt as pyjwt
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from tests.helpers import PASSWORD
from tests.openid_connect.conftest import LogoutReceiver, query_of
from tests.pages.conftest import form_token
from tests.realtime.conftest import Server, make_server

with warnings.catch_warnings():
    # Authlib 1.9 announces a future httpx2 package (not released with it); the httpx
    # integration is the one it ships and documents today.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

WITHIN = 15.0  # seconds
REDIRECT = "http://127.0.0.1:9999/callback"  # never contacted: the test reads the redirect


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path)
    srv.env["WATCHWORD_PUBLIC_URL"] = srv.http
    try:  # stopped even when it never answered (a start that timed out leaves a process)
        srv.start()
        srv.create_user("alice@example.com")
        yield srv
    finally:
        srv.stop()


def register_app(srv: Server, receiver: LogoutReceiver) -> dict[str, Any]:
    result = srv.cli(
        "clients", "create", "--name", "Photos", "--type", "public",
        "--redirect-uri", REDIRECT, "--grant-types", "authorization_code,refresh_token",
        "--backchannel-logout-uri", receiver.url, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    assert created["client_type"] == "public" and created["client_secret"] is None
    return created


async def browser_consents(browser: httpx.AsyncClient, url: str) -> str:
    """The person: signs in on the sign-in page, allows the app; returns the app's redirect."""
    login_page = await browser.get("/login")
    signed_in = await browser.post(
        "/login",
        data={
            "csrf_token": form_token(login_page.text),
            "email": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    consent = await browser.get(url)
    assert consent.status_code == 200 and "consent-allow" in consent.text, consent.text
    form = {k: v[0] for k, v in parse_qs(url.split("?", 1)[1]).items()}
    form |= {"csrf_token": form_token(consent.text), "decision": "allow"}
    answer = await browser.post("/oauth2/authorize", data=form)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_a_relying_party_signs_in_refreshes_and_hears_the_logout(
    served: Server, receiver: LogoutReceiver
) -> None:
    app = register_app(served, receiver)
    async with httpx.AsyncClient(base_url=served.http, timeout=WITHIN) as anon:
        meta = (await anon.get("/.well-known/openid-configuration")).json()
        rfc8414 = (await anon.get("/.well-known/oauth-authorization-server")).json()
        keys = KeySet.import_key_set((await anon.get(meta["jwks_uri"])).json())
    assert meta == rfc8414 and meta["issuer"] == served.http
    assert meta["response_types_supported"] == ["code"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]

    rp = AsyncOAuth2Client(
        client_id=app["client_id"],
        redirect_uri=REDIRECT,
        scope="openid profile email",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
        timeout=WITHIN,
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = rp.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    async with httpx.AsyncClient(base_url=served.http, timeout=WITHIN) as browser:
        callback = await browser_consents(browser, url)
    assert callback.startswith(REDIRECT + "?")
    answer = query_of(callback)
    assert answer["state"] == state and answer["iss"] == served.http

    token = await rp.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"].lower() == "bearer" and "refresh_token" in token
    id_token = jose_jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256"
    JWTClaimsRegistry(
        now=int(time.time()),
        iss={"essential": True, "value": served.http},
        aud={"essential": True, "value": app["client_id"]},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True, "value": served.users["alice@example.com"]["id"]},
        exp={"essential": True},
        iat={"essential": True},
        auth_time={"essential": True},
        sid={"essential": True},
        at_hash={"essential": True, "value": at_hash(token["access_token"])},
    ).validate(id_token.claims)
    assert id_token.claims["amr"] == ["pwd"] and id_token.claims["acr"] == "aal1"
    # The access token is for Watchword's APIs (UserInfo below checks it); the app only
    # reads what it names: its client_id and the session (RFC 9068).
    assert pyjwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    access = pyjwt.decode(token["access_token"], options={"verify_signature": False})
    assert access["client_id"] == app["client_id"]
    assert access["sid"] == id_token.claims["sid"]

    userinfo = await rp.get(meta["userinfo_endpoint"])
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == id_token.claims["sub"]
    assert userinfo.json()["email"] == "alice@example.com"

    refreshed = await rp.refresh_token(meta["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert (await rp.get(meta["userinfo_endpoint"])).status_code == 200

    sid = id_token.claims["sid"]
    revoked = served.cli("sessions", "revoke", sid)
    assert revoked.returncode == 0, revoked.stderr
    posted = receiver.received.get(timeout=WITHIN)
    logout = jose_jwt.decode(posted, keys, algorithms=["RS256"])
    assert logout.header["typ"] == "logout+jwt"
    JWTClaimsRegistry(
        now=int(time.time()),
        iss={"essential": True, "value": served.http},
        aud={"essential": True, "value": app["client_id"]},
        sid={"essential": True, "value": sid},
        sub={"essential": True, "value": id_token.claims["sub"]},
        iat={"essential": True},
        jti={"essential": True},
        events={"essential": True},
    ).validate(logout.claims)
    assert logout.claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert "nonce" not in logout.claims  # section 2.4 forbids it

    deadline = time.monotonic() + WITHIN
    while (status := (await rp.get(meta["userinfo_endpoint"])).status_code) == 200:
        assert time.monotonic() < deadline, "the app's token outlived its session"
        time.sleep(0.1)
    assert status == 401
    await rp.aclose()
