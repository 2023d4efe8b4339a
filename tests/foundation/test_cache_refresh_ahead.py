"""The hot caches (a bearer's account, a cookie's session, how a session signed in) are
renewed in the background before their age limit: a request on a hot credential never waits
on the store, one read serves everyone, and a read begun before a change never puts back what
the change removed."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from tests.conftest import Client
from tests.helpers import ManualClock
from tests.tokens.helpers import me, token_login
from watchword.domain import events
from watchword.services import bounded_cache
from watchword.services import session_cache as session_cache_module
from watchword.services import sessions as sessions_module
from watchword.services import stepup as stepup_module
from watchword.services.single_flight import SingleFlight


class GatedReads:
    """Wraps a store read: counts calls, and holds them until ``release`` (with
    ``after``, holds the row already read: a read that began before a change)."""

    def __init__(self, read: Any, *, after: bool = False) -> None:
        self.read = read
        self.after = after
        self.calls = 0
        self.done = 0
        self.gate = asyncio.Event()

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        try:
            if self.after:
                row = await self.read(*args)
                await self.gate.wait()
                return row
            await self.gate.wait()
            return await self.read(*args)
        finally:
            self.done += 1

    async def started(self) -> None:
        async with asyncio.timeout(10):
            while not self.calls:
                await asyncio.sleep(0)

    async def release(self) -> None:
        """Let the held reads run, and wait until they and what follows them have landed."""
        self.gate.set()
        async with asyncio.timeout(10):
            while self.done < self.calls:
                await asyncio.sleep(0.005)
        for _ in range(20):  # the rest of the read (a second store call, the cache write)
            await asyncio.sleep(0.005)


def age_by(monkeypatch: pytest.MonkeyPatch, *modules: Any, seconds: float) -> None:
    """Move the clock the cache's modules read its entries' age from."""
    later = modules[0].monotonic() + seconds
    for module in modules:
        monkeypatch.setattr(module, "monotonic", lambda: later)


def ttl(client: Client) -> float:
    return client.container.settings.session_cache_ttl


# -- the mechanism -------------------------------------------------------------------------


async def test_a_refresh_reads_in_the_background_once_and_a_caller_joins_it() -> None:
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        await gate.wait()
        return reads

    flights.refresh("k", read)  # returns at once: nobody waits on it
    flights.refresh("k", read)
    await asyncio.sleep(0)
    assert reads == 1 and flights.flying("k")
    joining = asyncio.ensure_future(flights.run("k", read))
    await asyncio.sleep(0)
    gate.set()
    assert await joining == 1
    assert reads == 1 and not flights.flying("k")


async def test_a_failed_refresh_is_left_for_the_next_read() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def down() -> int:
        raise LookupError("store down")

    flights.refresh("k", down)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not flights.flying("k")  # landed, its error retrieved (no unretrieved warning)

    async def up() -> int:
        return 7

    assert await flights.run("k", up) == 7


# -- a bearer token's account ----------------------------------------------------------------


async def bearer_in_use(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str, GatedReads]:
    """A user whose token has been used once (its account cached), and the account reads
    held from now on."""
    user = await client.register()
    token = (await token_login(client))["access_token"]
    assert (await me(client, token)).status_code == 200
    reads = GatedReads(client.container.db.users.get)
    monkeypatch.setattr(client.container.db.users, "get", reads)
    return user, token, reads


async def test_a_hot_bearer_is_answered_while_its_account_is_reread_in_the_background(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = client.container.tokens
    user, token, reads = await bearer_in_use(client, monkeypatch)
    state = tokens._users.get(user["id"])

    age_by(monkeypatch, bounded_cache, seconds=ttl(client) * 0.6)
    # The read is held: these are answered from the cache, without waiting for it.
    answers = await asyncio.gather(*(me(client, token) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert reads.calls == 1
    await reads.release()
    # Unchanged account: the same state, renewed, so its principals (and their views) stay.
    assert tokens._users.lookup(user["id"]) == (state, False)  # the same state, renewed
    assert (await me(client, token)).status_code == 200
    assert reads.calls == 1  # renewed: not due again yet


async def test_once_past_its_age_limit_the_account_is_read_once_for_every_waiting_request(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token, reads = await bearer_in_use(client, monkeypatch)

    age_by(monkeypatch, bounded_cache, seconds=ttl(client) + 1)
    waiting = [asyncio.ensure_future(me(client, token)) for _ in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)  # past the limit, they wait for the store
    await reads.release()
    assert [(await w).status_code for w in waiting] == [200] * 5
    assert reads.calls == 1


async def test_an_account_change_during_a_background_read_is_not_undone(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = client.container.tokens
    user, token, reads = await bearer_in_use(client, monkeypatch)

    age_by(monkeypatch, bounded_cache, seconds=ttl(client) * 0.6)
    assert (await me(client, token)).status_code == 200  # starts the background read
    await reads.started()
    await tokens._on_control({"type": events.USER_CHANGED, "user_id": user["id"]})
    await reads.release()
    assert tokens._users.get(user["id"]) is None  # the read began before the change: not kept


async def test_an_account_changed_without_an_event_is_seen_once_it_is_reread(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missed event cannot keep a changed account for longer than the age limit: the
    background read replaces what it finds changed (and keeps what it finds the same)."""
    _, token, reads = await bearer_in_use(client, monkeypatch)
    read = reads.read

    async def renamed(user_id: str) -> Any:
        return dataclasses.replace(await read(user_id), first_name="Renamed")

    reads.read = renamed
    age_by(monkeypatch, bounded_cache, seconds=ttl(client) * 0.6)
    before = await me(client, token)  # answered from the cache; starts the read
    assert before.json()["user"]["first_name"] is None
    await reads.release()
    assert (await me(client, token)).json()["user"]["first_name"] == "Renamed"


# -- a cookie's session ----------------------------------------------------------------------


async def test_a_hot_session_cookie_is_answered_while_its_session_is_reread(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    await client.login()
    assert (await client.get("/v1/me")).status_code == 200
    cache = client.container.sessions.cache
    reads = GatedReads(client.container.db.sessions.get_by_secret_hash)
    monkeypatch.setattr(client.container.db.sessions, "get_by_secret_hash", reads)

    age_by(monkeypatch, session_cache_module, sessions_module, seconds=ttl(client) * 0.6)
    answers = await asyncio.gather(*(client.get("/v1/me") for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert reads.calls == 1
    await reads.release()
    (entry,) = cache._by_hash.values()
    assert entry.loaded_at == session_cache_module.monotonic()  # renewed


async def test_a_session_dropped_during_a_background_read_is_not_put_back(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    await client.login()
    body = (await client.get("/v1/me")).json()
    cache = client.container.sessions.cache
    reads = GatedReads(client.container.db.sessions.get_by_secret_hash)
    monkeypatch.setattr(client.container.db.sessions, "get_by_secret_hash", reads)

    age_by(monkeypatch, session_cache_module, sessions_module, seconds=ttl(client) * 0.6)
    assert (await client.get("/v1/me")).status_code == 200  # starts the background read
    await reads.started()
    cache.drop_session(body["session"]["id"])  # as a revocation's control event does
    await reads.release()
    assert len(cache) == 0


# -- how the session signed in (auth_time, amr) ----------------------------------------------


async def test_how_a_session_signed_in_is_reread_in_the_background_while_in_use(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    await client.login()
    first = (await client.get("/v1/me")).json()["authentication"]
    step_up = client.container.step_up
    reads = GatedReads(step_up._store.get)
    monkeypatch.setattr(step_up._store, "get", reads)

    age_by(monkeypatch, stepup_module, seconds=ttl(client) * 0.6)
    answers = await asyncio.gather(*(client.get("/v1/me") for _ in range(5)))
    assert [a.json()["authentication"] for a in answers] == [first] * 5
    assert reads.calls == 1
    await reads.release()
    ((read_at, _, _),) = step_up._shown.values()
    assert read_at == stepup_module.monotonic()


async def test_a_step_up_during_a_background_read_is_not_overwritten(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    await client.login()
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    step_up = client.container.step_up
    reads = GatedReads(step_up._store.get)
    monkeypatch.setattr(step_up._store, "get", reads)

    age_by(monkeypatch, stepup_module, seconds=ttl(client) * 0.6)
    assert (await client.get("/v1/me")).status_code == 200  # starts the background read
    await reads.started()
    later = stepup_module.monotonic() + 1
    monkeypatch.setattr(stepup_module, "monotonic", lambda: later)
    newer = (later, (step_up._clock.now(), ["pwd", "otp"]), {"amr": ["pwd", "otp"]})
    step_up._shown[session_id] = newer  # as a step-up landing meanwhile writes it
    await reads.release()
    assert step_up._shown[session_id] is newer


# -- an API key ------------------------------------------------------------------------------


async def test_a_hot_api_key_is_answered_while_it_is_reread_and_a_revocation_still_wins(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.machines.conftest import make_api_key

    await client.register()
    await client.login()
    made = await make_api_key(client)
    headers = {"X-API-Key": made["key"]}
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    api_keys = client.container.api_keys
    reads = GatedReads(api_keys._store.get_by_public_id, after=True)
    monkeypatch.setattr(api_keys._store, "get_by_public_id", reads)

    age_by(monkeypatch, bounded_cache, seconds=client.container.settings.machine_cache_ttl * 0.6)
    answers = await asyncio.gather(*(client.get("/v1/me", headers=headers) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    await reads.started()
    assert reads.calls == 1
    # Revoked while the background read holds the row it read before: it must not bring
    # the key back.
    revoked = await client.delete(f"/v1/api-keys/{made['api_key']['id']}")
    assert revoked.status_code in (200, 204), revoked.text
    await reads.release()
    assert (await client.get("/v1/me", headers=headers)).status_code == 401


# -- an HTTP-signature key -------------------------------------------------------------------


async def test_a_hot_signing_key_is_answered_while_it_is_reread_and_a_revocation_still_wins(
    client: Client, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.machines.test_signatures import _status, hmac_key, signed, signer

    await client.register()
    await client.login()
    key_id, secret = await hmac_key(client)
    auth = signer(key_id, secret, clock)
    assert (await _status(client, signed(auth, "GET", "/v1/me"))).status_code == 200
    signing = client.container.signing
    reads = GatedReads(signing._store.get, after=True)
    monkeypatch.setattr(signing._store, "get", reads)

    age_by(monkeypatch, bounded_cache, seconds=client.container.settings.machine_cache_ttl * 0.6)
    answers = [await _status(client, signed(auth, "GET", "/v1/me")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    await reads.started()
    assert reads.calls == 1
    assert (await client.delete(f"/v1/signing-keys/{key_id}")).status_code == 200
    await reads.release()
    assert (await _status(client, signed(auth, "GET", "/v1/me"))).status_code == 401


async def test_a_cached_session_past_its_age_limit_is_read_again_before_it_is_trusted(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()
    await client.login()
    assert (await client.get("/v1/me")).status_code == 200  # read once, now cached
    sessions = client.container.db.sessions
    reads = GatedReads(sessions.get_by_secret_hash)
    reads.gate.set()  # counts, holds nothing
    monkeypatch.setattr(sessions, "get_by_secret_hash", reads)
    assert (await client.get("/v1/me")).status_code == 200
    assert reads.calls == 0  # served from the cache
    age_by(monkeypatch, session_cache_module, seconds=ttl(client) + 1)
    assert (await client.get("/v1/me")).status_code == 200
    assert reads.calls == 1


async def test_a_cached_api_key_past_its_age_limit_is_read_again_before_it_is_trusted(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.machines.conftest import make_api_key

    await client.register()
    await client.login()
    headers = {"X-API-Key": (await make_api_key(client))["key"]}
    assert (await client.get("/v1/me", headers=headers)).status_code == 200  # now cached
    api_keys = client.container.api_keys
    reads = GatedReads(api_keys._store.get_by_public_id)
    reads.gate.set()  # counts, holds nothing
    monkeypatch.setattr(api_keys._store, "get_by_public_id", reads)
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    assert reads.calls == 0
    age_by(monkeypatch, bounded_cache, seconds=client.container.settings.machine_cache_ttl + 1)
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    assert reads.calls == 1
