"""Authenticators for machines: API keys, opaque bearer tokens and RFC 9421 signed requests,
plus OAuth2 client authentication for the ``/oauth2`` endpoints (RFC 6749 section 2.3.1).

A signature covers the body through ``Content-Digest``, so ``SignedBodyMiddleware`` reads the
body before authentication, only when the request carries ``Signature-Input``, and replays it to
the application unchanged.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from starlette.datastructures import FormData
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchword.domain.apikeys import looks_like_api_key
from watchword.domain.clients import OAuthClient, looks_like_opaque_token
from watchword.domain.principal import Principal
from watchword.services.apikeys import ApiKeyService
from watchword.services.clients import ClientService, InvalidClient
from watchword.services.context import RequestContext
from watchword.services.credential_guard import ContextSource
from watchword.services.signing import SigningService
from watchword.web.authn import DEFER, Deferred, request_header
from watchword.web.authn_bearer import bearer_value
from watchword.web.deps import client_ip
from watchword.web.errors import PayloadTooLarge, watchword_error_response

SIGNED_BODY = "watchword.signed_body"


def _ctx(conn: HTTPConnection) -> RequestContext:
    return RequestContext.of(client_ip(conn), conn.headers.get("user-agent"))


def _context_source(conn: HTTPConnection) -> ContextSource:
    made: list[RequestContext] = []

    def source() -> RequestContext:
        if not made:
            made.append(_ctx(conn))
        return made[0]

    return source


class ApiKeyAuthenticator:
    """``Authorization: Bearer ww_live_...`` or ``X-API-Key: ww_live_...``."""

    headers = frozenset({b"authorization", b"x-api-key"})

    def __init__(self, api_keys: ApiKeyService) -> None:
        self._api_keys = api_keys

    def authenticate_cached(self, conn: HTTPConnection) -> Principal | Deferred | None:
        key = _presented_key(conn)
        if key is None:
            return None
        return self._api_keys.authenticate_cached(key) or DEFER

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        key = _presented_key(conn)
        if key is None:
            return None
        return await self._api_keys.authenticate(key, _context_source(conn))


def _presented_key(conn: HTTPConnection) -> str | None:
    key = request_header(conn, b"x-api-key")
    if key is None:
        token = bearer_value(conn)
        if token is None or not looks_like_api_key(token):
            return None
        key = token
    return key.strip()


class OpaqueTokenAuthenticator:
    """``Authorization: Bearer ww_at_...``: an opaque access token of an OAuth2 client."""

    headers = frozenset({b"authorization"})

    def __init__(self, clients: ClientService) -> None:
        self._clients = clients

    def authenticate_cached(self, conn: HTTPConnection) -> Deferred | None:
        token = bearer_value(conn)
        return DEFER if token is not None and looks_like_opaque_token(token) else None

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        token = bearer_value(conn)
        if token is None or not looks_like_opaque_token(token):
            return None
        return await self._clients.authenticate_opaque(token, _context_source(conn))


class SignatureAuthenticator:
    """A request carrying ``Signature-Input`` is authenticated by its signature alone."""

    headers = frozenset({b"signature-input"})

    def __init__(self, signing: SigningService, public_url: str | None) -> None:
        self._signing = signing
        self._public_url = public_url.rstrip("/") if public_url else None

    def target_uri(self, scope: Scope) -> str:
        """The URI the client signed: the public URL when the server sits behind a proxy."""
        raw = scope.get("raw_path") or scope["path"].encode()
        path = bytes(raw).split(b"?", 1)[0].decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        if self._public_url:
            base = self._public_url
        else:
            host = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"host"),
                None,
            )
            if host is None:
                server = scope.get("server") or ("localhost", None)
                host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
            base = f"{scope.get('scheme', 'http')}://{host}"
        return base + path + (f"?{query}" if query else "")

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        scope = conn.scope
        if not any(k == b"signature-input" for k, _ in scope["headers"]):
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        return await self._signing.authenticate(
            method=scope.get("method", "GET"),
            url=self.target_uri(scope),
            headers=headers,
            body=scope.get(SIGNED_BODY, b""),
            ctx=_ctx(conn),
        )


class SignedBodyMiddleware:
    """Buffers the body of a signed request for ``SignatureAuthenticator`` and replays it.
    Sits inside ``BodyLimitMiddleware``, so the buffer never exceeds the body limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(k == b"signature-input" for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except PayloadTooLarge as exc:
            await watchword_error_response(exc)(scope, receive, send)
            return
        body = b"".join(chunks)
        scope[SIGNED_BODY] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def authenticate_oauth_client(
    conn: HTTPConnection, form: FormData, clients: ClientService
) -> OAuthClient:
    """RFC 6749 section 2.3.1: ``client_secret_basic`` (with the form-urlencoded id and
    secret inside Basic) or ``client_secret_post``; using both at once is refused."""
    header = conn.headers.get("authorization")
    posted_id, posted_secret = form.get("client_id"), form.get("client_secret")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClient("Use HTTP Basic or client_secret_post for client authentication.")
        if posted_secret is not None:
            raise InvalidClient("Use one client authentication method, not two.")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidClient("Malformed Basic credentials.") from exc
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise InvalidClient("Malformed Basic credentials.")
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if isinstance(posted_id, str) and posted_id != client_id:
            raise InvalidClient("client_id does not match the authenticated client.")
    else:
        if not isinstance(posted_id, str) or not isinstance(posted_secret, str):
            raise InvalidClient("Client authentication is required.")
        client_id, secret = posted_id, posted_secret
    return await clients.authenticate_client(client_id, secret, _ctx(conn))


async def authenticate_token_client(
    conn: HTTPConnection, form: FormData, clients: ClientService
) -> OAuthClient:
    """A confidential client authenticates (as above); a public client only names itself
    with ``client_id`` (``token_endpoint_auth_method`` "none", RFC 7591 2)."""
    if presents_client_credentials(conn, form):
        return await authenticate_oauth_client(conn, form, clients)
    posted_id = form.get("client_id")
    if not isinstance(posted_id, str) or not posted_id:
        raise InvalidClient("Client authentication is required.")
    return await clients.public_client(posted_id, _ctx(conn))


def presents_client_credentials(conn: HTTPConnection, form: FormData) -> bool:
    header = conn.headers.get("authorization")
    return (header is not None and header.lower().startswith("basic ")) or (
        form.get("client_secret") is not None
    )
