"""Helpers for the OpenID Connect tests: apps registered through the service, PKCE pairs
computed here (not by the server's code), and one authorization request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.conftest import Client
from watchword.services.clients import AppRegistration
from watchword.services.context import CLI

REDIRECT = "http://127.0.0.1:9999/callback"


@dataclass
class App:
    client_id: str
    secret: str
    redirect_uri: str


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636 4.1 and 4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def make_app(
    client: Client,
    *,
    client_type: str = "public",
    first_party: bool = False,
    redirect_uri: str = REDIRECT,
    **extra: Any,
) -> App:
    created = await client.container.clients.create(
        name="Photos",
        ctx=CLI,
        app=AppRegistration.parse(
            client_type=client_type,
            grant_types="authorization_code,refresh_token",
            redirect_uris=[redirect_uri],
            first_party=first_party,
            **extra,
        ),
    )
    return App(created.client.id, created.secret, redirect_uri)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(client: httpx.AsyncClient, app: App, **params: str) -> httpx.Response:
    values = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": "openid profile email",
        "state": "st-" + secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8),
    }
    values.update(params)
    return await client.get("/oauth2/authorize", params={k: v for k, v in values.items() if v})


async def code_for(client: Client, app: App, challenge: str | None, **params: str) -> str:
    """Sign-in done (cookie), first-party app: the code from the redirect."""
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}
    response = await authorize(client, app, **extra, **params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(app.redirect_uri + "?"), location
    return query_of(location)["code"]


async def exchange(
    anon: httpx.AsyncClient, app: App, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uri,
        "client_id": app.client_id,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(extra)
    return await anon.post("/oauth2/token", data=form)


def bare(client: Client) -> httpx.AsyncClient:
    """A client on the same app without the cookie: what the app's server-side code is."""
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


@dataclass
class LogoutReceiver:
    """An app's back-channel logout endpoint on loopback: queues every logout token it is
    POSTed, answers 200."""

    url: str
    received: queue.Queue[str] = field(default_factory=queue.Queue)

    async def next_token(self, within: float = 15.0) -> dict[str, Any]:
        """The next logout token's claims, unverified (the tests verify what they need)."""
        token = await asyncio.to_thread(self.received.get, True, within)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    holder: list[LogoutReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            holder[0].received.put(parse_qs(body.decode())["logout_token"][0])
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(LogoutReceiver(f"http://127.0.0.1:{httpd.server_address[1]}/backchannel"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    httpd.shutdown()
