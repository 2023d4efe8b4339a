"""A credential whose answer is in memory (a verified token, a cached session or API key) is
decided without a coroutine: the authenticator chain and the permission rule answer at once,
exactly as their coroutines would, and leave to those coroutines whatever needs the store or
a refusal to record."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection, Request

from tests.conftest import Client, ClientFactory
from tests.helpers import cookie_header
from tests.machines.conftest import make_api_key
from tests.pages.conftest import make_admin
from tests.tokens.helpers import bearer, token_login
from watchword.domain.audit import AuditType
from watchword.domain.errors import (
    CsrfRejected,
    InsufficientScope,
    InvalidCredential,
    WatchwordError,
)
from watchword.domain.principal import ANONYMOUS, Principal
from watchword.domain.sessions import RevokeReason
from watchword.services.context import RequestContext
from watchword.web.authn import PRINCIPAL, AuthChain
from watchword.web.deps import require


def chain_of(client: Client) -> AuthChain:
    app: Any = client._transport.app  # type: ignore[attr-defined]
    chain: AuthChain = app.state.auth_chain
    return chain


def connection(client: Client, headers: dict[str, str], method: str = "GET") -> HTTPConnection:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    app: Any = client._transport.app  # type: ignore[attr-defined]
    scope = {"type": "http", "method": method, "path": "/v1/me", "headers": raw, "app": app}
    return Request(scope)


async def credentials(client: Client) -> dict[str, dict[str, str]]:
    """A cookie session, an access token and an API key of alice, each used once."""
    await client.register()
    await client.login()
    cookie = cookie_header(client)
    key = (await make_api_key(client))["key"]
    found = {
        "cookie": cookie,
        "bearer_jwt": bearer(await access_token(client)),
        "api_key": {"X-API-Key": key},
    }
    client.cookies.clear()
    for headers in found.values():
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
    return found


async def access_token(client: Client) -> str:
    token: str = (await token_login(client))["access_token"]
    return token


async def test_a_credential_in_memory_is_answered_without_the_chain_coroutine(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await credentials(client)

    async def no_coroutine(conn: HTTPConnection) -> Principal:
        raise AssertionError("the chain's coroutine ran for a credential in memory")

    monkeypatch.setattr(chain_of(client), "authenticate", no_coroutine)
    for method, headers in found.items():
        response = await client.get("/v1/me", headers=headers)
        assert response.status_code == 200, (method, response.text)
        assert response.json()["authentication"]["method"] == method


async def test_a_token_is_found_in_memory_however_its_header_is_written(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await credentials(client)
    token = found["bearer_jwt"]["Authorization"].removeprefix("Bearer ")
    key = found["api_key"]["X-API-Key"]
    chain = chain_of(client)
    expected = chain.authenticate_cached(connection(client, found["bearer_jwt"]))
    assert expected is not None
    for header in (f"bearer {token}", f"BEARER {token}", f"Bearer  {token} "):
        remembered = chain.authenticate_cached(connection(client, {"Authorization": header}))
        assert remembered is expected, header
    by_key = chain.authenticate_cached(connection(client, {"Authorization": f"Bearer {key}"}))
    assert by_key is not None and by_key.method.value == "api_key"
    # Another scheme of the same length is no bearer credential, from memory or not.
    other = {"Authorization": f"Digest {token}"}
    assert chain.authenticate_cached(connection(client, other)) is ANONYMOUS
    assert (await client.get("/v1/me", headers=other)).status_code == 401


async def test_memory_and_coroutine_give_the_same_principal(client: Client) -> None:
    found = await credentials(client)
    chain = chain_of(client)
    for method, headers in found.items():
        conn = connection(client, headers)
        remembered = chain.authenticate_cached(conn)
        assert remembered is not None, method
        assert remembered is await chain.authenticate(conn), method
        assert remembered.method.value == method


async def test_a_credential_not_in_memory_is_left_to_the_coroutine(client: Client) -> None:
    await client.register()
    await client.login()
    client.cookies.clear()
    chain = chain_of(client)
    headers = bearer(await access_token(client))
    # Issued, never presented: its signature is not verified yet.
    assert chain.authenticate_cached(connection(client, headers)) is None
    principal = await chain.authenticate(connection(client, headers))
    assert principal.user_id is not None
    assert chain.authenticate_cached(connection(client, headers)) is principal


async def test_a_revoked_session_is_never_accepted_from_memory(client: Client) -> None:
    found = await credentials(client)
    chain = chain_of(client)
    for method in ("cookie", "bearer_jwt"):
        me = await client.get("/v1/me", headers=found[method])
        session_id = me.json()["session"]["id"]
        await client.container.sessions.revoke(session_id, RevokeReason.LOGOUT, RequestContext())
        conn = connection(client, found[method])
        remembered: Principal | InvalidCredential | None
        try:
            remembered = chain.authenticate_cached(conn)
        except InvalidCredential as exc:
            remembered = exc
        with pytest.raises(InvalidCredential) as refused:
            await chain.authenticate(conn)
        if method == "bearer_jwt":
            # The verified token stays in memory; the revocation is known there too.
            assert isinstance(remembered, InvalidCredential)
        if remembered is not None:  # a cookie's session left memory when it was revoked
            assert isinstance(remembered, InvalidCredential), method
            assert remembered.code == refused.value.code, method
            assert remembered.message == refused.value.message, method
        assert (await client.get("/v1/me", headers=found[method])).status_code == 401


async def test_a_wrong_api_key_secret_is_left_to_the_coroutine_that_records_it(
    client: Client,
) -> None:
    key = (await credentials(client))["api_key"]["X-API-Key"]
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")  # same key id, another secret
    assert chain_of(client).authenticate_cached(connection(client, {"X-API-Key": wrong})) is None
    refused = await client.get("/v1/me", headers={"X-API-Key": wrong})
    assert refused.status_code == 401
    events = await client.container.db.audit.tail(limit=20)
    reasons = [e.details["reason"] for e in events if e.type == AuditType.CREDENTIAL_REJECTED]
    assert reasons == ["wrong_secret"]


def request_as(client: Client, principal: Principal, method: str, **headers: str) -> Request:
    request = connection(client, headers, method)
    request.scope[PRINCIPAL] = principal
    return request  # type: ignore[return-value]


async def decided_both_ways(requirement: Any, request: Request) -> Principal | WatchwordError:
    """``settled`` and the awaited dependency, which must agree; their common answer."""
    try:
        settled: Principal | WatchwordError | None = requirement.settled(request)
    except WatchwordError as exc:
        settled = exc
    try:
        awaited: Principal | WatchwordError = await requirement(request)
    except WatchwordError as exc:
        awaited = exc
    assert settled is not None
    assert type(settled) is type(awaited)
    if isinstance(awaited, Principal):
        assert settled is awaited
    return awaited


async def test_the_permission_rule_decides_at_once_as_the_dependency_does(
    client: Client,
) -> None:
    await client.register()
    await client.login()
    cookie_principal = await chain_of(client).authenticate(
        connection(client, cookie_header(client))
    )
    assert cookie_principal.needs_csrf
    assert await decided_both_ways(require(), request_as(client, cookie_principal, "GET")) is (
        cookie_principal
    )
    # An unsafe request on the cookie needs the CSRF header; a scope alice lacks is refused.
    forged = await decided_both_ways(require(), request_as(client, cookie_principal, "POST"))
    assert isinstance(forged, CsrfRejected)
    lacking = await decided_both_ways(require("admin"), request_as(client, cookie_principal, "GET"))
    assert isinstance(lacking, InsufficientScope)


async def test_a_second_factor_rule_is_left_to_the_dependency(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(mfa_required_roles="admin")
    await make_admin(client)
    await client.login("root@example.com")
    principal = await chain_of(client).authenticate(connection(client, cookie_header(client)))
    request = request_as(client, principal, "GET")
    # Whether a second factor is enrolled is read from the store: not decided at once.
    assert require("profile").settled(request) is None
    with pytest.raises(WatchwordError) as refused:
        await require("profile")(request)
    assert refused.value.code == "mfa_enrolment_required"
    # The routes open to enrolment (who am I) are decided at once.
    assert require(enrolling=True).settled(request) is principal


async def test_two_credentials_at_once_are_decided_as_the_coroutine_decides(
    client: Client,
) -> None:
    found = await credentials(client)
    chain = chain_of(client)
    for first, second in (("cookie", "api_key"), ("bearer_jwt", "cookie")):
        conn = connection(client, {**found[first], **found[second]})
        remembered = chain.authenticate_cached(conn)
        assert remembered is not None and remembered is await chain.authenticate(conn)
        # One credential alone is still decided by its own authenticator.
        alone = chain.authenticate_cached(connection(client, found[second]))
        assert alone is not None and alone.method.value == second
