"""The framework glue answers RFC 6750: FastAPI dependency, Starlette middleware, Flask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.sdk.issuer import ISSUER, FakeIssuer
from watchword.sdk import (
    BearerAuthMiddleware,
    RevocationList,
    VerifiedToken,
    Verifier,
    flask_require,
    require,
    token_of,
)
from watchword.sdk._bearer import bearer_token, refusal
from watchword.sdk._errors import InvalidRequest, RevocationFeedStale


@pytest.fixture
def verifier(issuer: FakeIssuer) -> Iterator[Verifier]:
    verifier = Verifier(
        issuer=ISSUER,
        http_client=httpx.Client(transport=issuer.transport),
        async_http_client=httpx.AsyncClient(transport=issuer.transport),
        clock=issuer.clock,
    )
    yield verifier
    verifier.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the shared pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer abc.def-ghi_~+/==", "abc.def-ghi_~+/=="),
        ("bearer  abc", "abc"),
    ],
)
def test_bearer_tokens_are_read_per_rfc_6750(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", 'Bearer "x"', "Bearer é"])
def test_malformed_bearer_headers_are_invalid_requests(header: str) -> None:
    with pytest.raises(InvalidRequest):
        bearer_token(header)


def test_challenges_cannot_be_broken_by_descriptions() -> None:
    answer = refusal(InvalidRequest('bad "quote" \\ and\nnewline'))
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.count('"') == 6
    assert "\n" not in challenge and "\\" not in challenge
    assert answer.status_code == 400


def test_a_stale_feed_is_a_503_without_a_challenge() -> None:
    answer = refusal(RevocationFeedStale("down"))
    assert answer.status_code == 503
    assert "WWW-Authenticate" not in answer.headers
    assert answer.body == {"error": "temporarily_unavailable", "message": "down"}


# -- FastAPI --------------------------------------------------------------------------------


def fastapi_app(verifier: Verifier, **kwargs: Any) -> FastAPI:
    app = FastAPI()
    app.state.watchword_verifier = verifier

    @app.get("/notes")
    async def notes(token: VerifiedToken = Depends(require(scopes=["notes:read"]))) -> Any:
        return {"user": token.subject, "scopes": sorted(token.scopes)}

    @app.get("/any")
    async def any_token(token: VerifiedToken = Depends(require(**kwargs))) -> Any:
        return {"user": token.subject}

    return app


async def call(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.get(path, headers=headers or {})


async def test_fastapi_accepts_a_good_token(issuer: FakeIssuer, verifier: Verifier) -> None:
    response = await call(fastapi_app(verifier), "/notes", bearer(issuer.token()))
    assert response.status_code == 200
    assert response.json() == {"user": "user-1", "scopes": ["notes:read", "profile"]}


async def test_fastapi_without_a_token_is_a_bare_challenge(verifier: Verifier) -> None:
    response = await call(fastapi_app(verifier), "/notes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="watchword"'


async def test_fastapi_refuses_a_bad_token_with_invalid_token(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    response = await call(fastapi_app(verifier), "/notes", bearer(issuer.token(aud="billing")))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="watchword", error="invalid_token", '
        'error_description="The token is not meant for this audience."'
    )
    assert response.json()["detail"]["error"] == "invalid_token"


async def test_fastapi_refuses_missing_scopes_with_403(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    response = await call(fastapi_app(verifier), "/notes", bearer(issuer.token(scope="profile")))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="notes:read"' in challenge


async def test_fastapi_malformed_header_is_400(verifier: Verifier) -> None:
    response = await call(fastapi_app(verifier), "/notes", {"Authorization": "Bearer"})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


async def test_fastapi_with_an_explicit_verifier(issuer: FakeIssuer, verifier: Verifier) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(token: VerifiedToken = Depends(require(verifier=verifier))) -> Any:
        return {"sid": token.session_id}

    response = await call(app, "/x", bearer(issuer.token()))
    assert response.json() == {"sid": "session-1"}


async def test_fastapi_fails_closed_on_a_stale_feed(issuer: FakeIssuer) -> None:
    verifier = Verifier(
        issuer=ISSUER,
        http_client=httpx.Client(transport=issuer.transport),
        async_http_client=httpx.AsyncClient(transport=issuer.transport),
        clock=issuer.clock,
        credential="k",
        max_feed_staleness=30,
    )
    verifier._stop.set()  # no background feed in this test: it never syncs
    response = await call(fastapi_app(verifier), "/notes", bearer(issuer.token()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert isinstance(verifier.revocations, RevocationList)


# -- Starlette middleware -------------------------------------------------------------------


def starlette_app(verifier: Verifier, **options: Any) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        token = token_of(request)
        return JSONResponse({"user": token.subject if token else None})

    app = Starlette(routes=[Route("/whoami", whoami), Route("/public/health", whoami)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, **options)
    return app


async def test_the_optional_middleware_lets_anonymous_through(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    app = starlette_app(verifier)
    assert (await call(app, "/whoami")).json() == {"user": None}
    assert (await call(app, "/whoami", bearer(issuer.token()))).json() == {"user": "user-1"}
    # A bad token is not silently anonymous for routes that look: FastAPI's require raises it.
    bad = await call(app, "/whoami", bearer(issuer.token(iss="https://evil.test")))
    assert bad.json() == {"user": None}


async def test_the_required_middleware_refuses_per_rfc_6750(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    app = starlette_app(verifier, scopes=["notes:read"], exclude=["/public"])
    assert (await call(app, "/public/health")).status_code == 200
    missing = await call(app, "/whoami")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="watchword"'
    expired = await call(app, "/whoami", bearer(issuer.token(exp=int(issuer.clock()) - 60)))
    assert expired.status_code == 401
    assert 'error_description="The token has expired."' in expired.headers["www-authenticate"]
    assert expired.json() == {"error": "invalid_token", "message": "The token has expired."}
    scoped = await call(app, "/whoami", bearer(issuer.token(scope="profile")))
    assert scoped.status_code == 403
    ok = await call(app, "/whoami", bearer(issuer.token()))
    assert ok.json() == {"user": "user-1"}


async def test_fastapi_require_reuses_the_middleware_result(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    app = fastapi_app(verifier)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    ok = await call(app, "/notes", bearer(issuer.token()))
    assert ok.status_code == 200
    bad = await call(app, "/notes", bearer(issuer.token(iss="https://evil.test")))
    assert bad.status_code == 401
    assert "expected issuer" in bad.headers["www-authenticate"]


async def test_the_required_middleware_closes_websockets(verifier: Verifier) -> None:
    app = BearerAuthMiddleware(_never_called, verifier, required=True)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    assert sent == [
        {"type": "websocket.close", "code": 1008, "reason": "A bearer token is required."}
    ]


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not run")


# -- Flask ----------------------------------------------------------------------------------


def test_the_flask_decorator(issuer: FakeIssuer, verifier: Verifier) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get("/notes")
    @flask_require(verifier, "notes:read")
    def notes() -> Any:
        return {"user": flask.g.watchword_token.subject}

    client = app.test_client()
    ok = client.get("/notes", headers=bearer(issuer.token()))
    assert ok.status_code == 200 and ok.get_json() == {"user": "user-1"}
    missing = client.get("/notes")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="watchword"'
    forged = client.get("/notes", headers=bearer(issuer.token()[:-4] + "AAAA"))
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
    scoped = client.get("/notes", headers=bearer(issuer.token(scope="x")))
    assert scoped.status_code == 403
    assert scoped.get_json()["error"] == "insufficient_scope"
    assert client.get("/notes", headers={"Authorization": "Bearer a b"}).status_code == 400
