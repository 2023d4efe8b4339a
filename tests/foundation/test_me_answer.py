"""GET /v1/me's body is encoded once per cached principal and only its session's times are
written per call: it must be byte for byte the document written whole, and show what changed
(the last-seen time, a step-up, a re-read session) at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.tokens.helpers import token_login
from watchword.domain.errors import StoreUnavailable
from watchword.domain.sessions import Session
from watchword.services import stepup as stepup_module
from watchword.web.me_body import encode_me
from watchword.web.views import session_view

SIGNED_IN = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
USER = {"id": "u1", "email": "alice@example.com", "roles": ["user"], "name": 'Ålice "A"'}
AUTHENTICATION = {"method": "cookie", "kind": "user", "amr": ["pwd"], "auth_time": 1767268800}


def a_session(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "s1",
        "user_id": "u1",
        "secret_hash": "h" * 64,
        "created_at": SIGNED_IN,
        "last_seen_at": SIGNED_IN,
        "expires_at": SIGNED_IN + timedelta(hours=12),
        "idle_timeout_seconds": 1800,
        "device_name": "laptop",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "ip": "127.0.0.1",
        **changes,
    }
    return Session(**fields)


def written_whole(session: Session | None, seen: datetime, csrf: str | None) -> bytes:
    document: dict[str, Any] = {"user": USER, "session": None, "authentication": AUTHENTICATION}
    if session is not None:
        document["session"] = session_view(session, seen, current_id=session.id)
    if csrf is not None:
        document["csrf_token"] = csrf
    return orjson.dumps(document)


@pytest.mark.parametrize("csrf", ["csrf-token-value", None])
@pytest.mark.parametrize(
    "seen",
    [
        SIGNED_IN,
        SIGNED_IN + timedelta(seconds=5, microseconds=1),
        # idle expiry past the absolute one: expires_at is the absolute time
        SIGNED_IN + timedelta(hours=11, minutes=50),
    ],
)
def test_the_encoded_body_is_the_document_written_whole(seen: datetime, csrf: str | None) -> None:
    session = a_session()
    encoded = encode_me(
        user=USER, authentication=AUTHENTICATION, session=session, shown=None, csrf_token=csrf
    )
    assert encoded.body_at(seen) == written_whole(session, seen, csrf)


def test_the_times_are_written_again_when_the_session_is_seen_later() -> None:
    session = a_session()
    encoded = encode_me(
        user=USER, authentication=AUTHENTICATION, session=session, shown=None, csrf_token=None
    )
    first = encoded.body_at(SIGNED_IN)
    later = SIGNED_IN + timedelta(seconds=42)
    assert encoded.body_at(later) == written_whole(session, later, None) != first
    assert encoded.body_at(SIGNED_IN) == first


def test_the_header_lines_describe_the_body_they_go_with() -> None:
    """Kept with the body and made again with it: a time without microseconds makes a
    shorter body, and its Content-Length must follow."""
    no_store = ((b"cache-control", b"no-store"),)
    encoded = encode_me(
        user=USER,
        authentication=AUTHENTICATION,
        session=a_session(),
        shown=None,
        csrf_token=None,
        headers=no_store,
    )
    for seen in (SIGNED_IN, SIGNED_IN.replace(microsecond=0) + timedelta(seconds=3), SIGNED_IN):
        body, headers = encoded.answer_at(seen)
        assert body == encoded.body_at(seen)
        assert headers == (
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *no_store,
        )
    assert len(encoded.answer_at(SIGNED_IN.replace(microsecond=0))[0]) < len(body)


def test_without_a_session_the_body_has_none() -> None:
    encoded = encode_me(
        user=USER, authentication=AUTHENTICATION, session=None, shown=None, csrf_token=None
    )
    assert encoded.body_at(None) == written_whole(None, SIGNED_IN, None)
    assert orjson.loads(encoded.body_at(None))["session"] is None


async def test_each_cookie_request_shows_its_own_last_seen_time(
    client: Client, clock: ManualClock
) -> None:
    await client.register()
    await client.login()
    first = (await client.get("/v1/me")).json()["session"]
    clock.advance(7)
    second = (await client.get("/v1/me")).json()["session"]
    seen = datetime.fromisoformat(second["last_seen_at"])
    assert seen - datetime.fromisoformat(first["last_seen_at"]) == timedelta(seconds=7)
    assert datetime.fromisoformat(second["idle_expires_at"]) == seen + timedelta(minutes=30)
    assert second["id"] == first["id"]


async def test_last_seen_moves_in_whole_seconds_and_only_forward(
    client: Client, clock: ManualClock
) -> None:
    await client.register()
    await client.login()
    first = (await client.get("/v1/me")).json()["session"]["last_seen_at"]
    clock.advance(0.4)
    assert (await client.get("/v1/me")).json()["session"]["last_seen_at"] == first
    clock.advance(0.4)
    assert (await client.get("/v1/sessions")).json()["sessions"][0]["last_seen_at"] == first
    clock.advance(0.3)  # a second and a tenth since the first request
    moved = datetime.fromisoformat((await client.get("/v1/me")).json()["session"]["last_seen_at"])
    assert moved - datetime.fromisoformat(first) == timedelta(seconds=1.1)


async def test_a_token_request_shows_its_session_signed_in_again_while_the_token_is_cached(
    client: Client, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same token (so the same cached principal) shows a new sign-in record of its
    session once the record is read again."""
    await client.register()
    bearer = {"Authorization": f"Bearer {(await token_login(client))['access_token']}"}
    before = (await client.get("/v1/me", headers=bearer)).json()
    assert before["authentication"]["amr"] == ["pwd"]
    step_up = client.container.step_up
    await step_up._store.record(before["session"]["id"], clock.now(), ["pwd", "otp", "mfa"])
    later = stepup_module.monotonic() + client.container.settings.session_cache_ttl + 1
    monkeypatch.setattr(stepup_module, "monotonic", lambda: later)
    after = (await client.get("/v1/me", headers=bearer)).json()
    assert after["authentication"]["amr"] == ["pwd", "otp", "mfa"]
    assert after["session"] == before["session"]


async def test_requests_that_arrive_together_for_a_renewed_token_read_its_session_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a token's account entry has aged out of the cache, the next requests all get a
    new principal at once; its session row is read for all of them, not once each (64
    connections on one token each read it, and waited up to 190 ms behind one another)."""
    await client.register()
    bearer = {"Authorization": f"Bearer {(await token_login(client))['access_token']}"}
    first = await client.get("/v1/me", headers=bearer)
    assert first.status_code == 200
    container = client.container
    container.tokens._users.clear()  # the account's entry passed its age limit
    reads: list[str] = []
    real_get = container.db.sessions.get

    async def counted_get(session_id: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(session_id)
        await asyncio.sleep(0.01)  # a store that takes its time: the others arrive meanwhile
        return await real_get(session_id, *args, **kwargs)

    monkeypatch.setattr(container.db.sessions, "get", counted_get)
    answers = await asyncio.gather(*(client.get("/v1/me", headers=bearer) for _ in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.json()["session"]["id"] for a in answers} == {first.json()["session"]["id"]}
    assert reads == [first.json()["session"]["id"]]


async def test_a_shared_session_read_that_fails_fails_every_request_closed_and_is_not_kept(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is down when the shared read runs: every request that joined it answers 503,
    nothing is kept in place of the session, and the next request reads it again."""
    await client.register()
    bearer = {"Authorization": f"Bearer {(await token_login(client))['access_token']}"}
    first = await client.get("/v1/me", headers=bearer)
    assert first.status_code == 200
    container = client.container
    container.tokens._users.clear()
    real_get = container.db.sessions.get
    reads: list[str] = []

    async def unavailable(session_id: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(session_id)
        await asyncio.sleep(0.01)
        raise StoreUnavailable("The database is unavailable.")

    monkeypatch.setattr(container.db.sessions, "get", unavailable)
    answers = await asyncio.gather(*(client.get("/v1/me", headers=bearer) for _ in range(5)))
    assert [a.status_code for a in answers] == [503] * 5
    assert {a.json()["error"] for a in answers} == {"service_unavailable"}
    assert len(reads) == 1

    monkeypatch.setattr(container.db.sessions, "get", real_get)
    again = await client.get("/v1/me", headers=bearer)
    assert again.status_code == 200
    assert again.json()["session"]["id"] == first.json()["session"]["id"]
