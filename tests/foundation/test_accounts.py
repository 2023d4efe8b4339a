"""Registration, password hashing and sign-in over HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest
from argon2 import extract_parameters
from pydantic import ValidationError

from tests.conftest import Client, ClientFactory
from tests.foundation.conftest import CountingHasher, HasherClientFactory, set_cookie
from tests.helpers import PASSWORD
from watchword.config import Settings
from watchword.domain.audit import AuditType
from watchword.domain.clock import sha256_hex
from watchword.domain.passwords import PasswordHasher

# -- registration -----------------------------------------------------------------------------


async def test_registration_normalises_the_email_and_hides_the_hash(client: Client) -> None:
    response = await client.post(
        "/v1/users",
        json={
            "email": "  Alice@Example.COM \t",
            "password": PASSWORD,
            "first_name": "Alice",
            "last_name": "Liddell",
        },
    )
    assert response.status_code == 201, response.text
    user = response.json()["user"]
    assert user["email"] == "alice@example.com"
    assert (user["first_name"], user["last_name"]) == ("Alice", "Liddell")
    assert user["roles"] == [] and user["disabled"] is False
    assert "password" not in response.text and "argon2" not in response.text
    stored = await client.container.db.users.get_by_email("alice@example.com")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    await client.login("ALICE@example.com ")


async def test_registration_refuses_a_taken_email_in_any_case(client: Client) -> None:
    await client.register("alice@example.com")
    response = await client.post(
        "/v1/users", json={"email": "ALICE@EXAMPLE.com", "password": "another password"}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "email_taken"
    assert await client.container.db.users.count() == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 8 characters"),
        ("x" * 1025, "at most 1024 characters"),
        ("         ", "only whitespace"),
        ("alice@example.com", "must not be the email"),
    ],
)
async def test_password_policy_answers_422_with_a_clear_message(
    client: Client, password: str, message: str
) -> None:
    response = await client.post(
        "/v1/users", json={"email": "alice@example.com", "password": password}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "weak_password"
    assert message in response.json()["message"]
    assert await client.container.db.users.count() == 0


async def test_password_policy_is_configurable(client_factory: ClientFactory) -> None:
    client = await client_factory(password_min_length=12, password_max_length=20)
    short = await client.post("/v1/users", json={"email": "a@example.com", "password": "x" * 11})
    assert short.status_code == 422 and "at least 12" in short.json()["message"]
    long = await client.post("/v1/users", json={"email": "a@example.com", "password": "x" * 21})
    assert long.status_code == 422 and "at most 20" in long.json()["message"]
    assert (
        await client.post("/v1/users", json={"email": "a@example.com", "password": "x" * 12})
    ).status_code == 201


@pytest.mark.parametrize(
    "email",
    ["", "no-at-sign", "two@@example.com", "a b@example.com", "a@nodot", "x" * 250 + "@e.io"],
)
async def test_registration_refuses_bad_emails(client: Client, email: str) -> None:
    response = await client.post("/v1/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 422
    assert response.json()["error"] in ("invalid_email", "validation_error")
    assert await client.container.db.users.count() == 0


async def test_closed_registration_answers_403(client_factory: ClientFactory) -> None:
    client = await client_factory(open_registration=False)
    response = await client.post("/v1/users", json={"email": "a@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json() == {
        "error": "registration_closed",
        "message": "Registration is closed on this server.",
    }
    assert await client.container.db.users.count() == 0


async def test_registration_is_audited(client: Client) -> None:
    user = await client.register()
    events = await client.container.db.audit.for_user(user["id"])
    assert [e.type for e in events] == [AuditType.USER_REGISTERED]
    assert events[0].ip == "127.0.0.1"


# -- argon2id ---------------------------------------------------------------------------------


def test_default_hashing_is_argon2id_at_least_at_the_owasp_minimum() -> None:
    settings = Settings()
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    params = extract_parameters(hasher.hash(PASSWORD))
    assert params.type.name == "ID"
    assert params.memory_cost >= 19456 and params.time_cost >= 2 and params.parallelism >= 1


@pytest.mark.parametrize(
    "weaker", [{"argon2_memory_kib": 19455}, {"argon2_time_cost": 1}, {"argon2_parallelism": 0}]
)
def test_settings_refuse_argon2_below_the_owasp_minimum(weaker: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**weaker)  # type: ignore[arg-type]


async def test_login_rehashes_when_the_parameters_change(
    hasher_client: HasherClientFactory,
) -> None:
    old = await hasher_client(CountingHasher(time_cost=1, memory_kib=8))
    user = await old.register()
    before = await old.container.db.users.get(user["id"])
    assert before is not None and extract_parameters(before.password_hash).time_cost == 1
    new = await hasher_client(CountingHasher(time_cost=2, memory_kib=16))
    await new.login()
    after = await new.container.db.users.get(user["id"])
    assert after is not None and after.password_hash != before.password_hash
    params = extract_parameters(after.password_hash)
    assert (params.time_cost, params.memory_cost) == (2, 16)
    # The new hash still verifies, and an unchanged policy does not rehash again.
    await new.login()
    again = await new.container.db.users.get(user["id"])
    assert again is not None and again.password_hash == after.password_hash


# -- sign-in ----------------------------------------------------------------------------------


async def test_login_answers_user_session_and_csrf_token(client: Client) -> None:
    user = await client.register()
    response = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD, "device_name": "My laptop"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == user["id"]
    assert body["session"]["current"] is True
    assert body["session"]["device"]["name"] == "My laptop"
    assert body["session"]["device"]["browser"] == "Firefox"
    assert isinstance(body["csrf_token"], str) and len(body["csrf_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    _, secret, _ = set_cookie(response)
    assert secret not in response.text
    stored = await client.container.db.sessions.get(body["session"]["id"])
    assert stored is not None and stored.secret_hash == sha256_hex(secret)


async def test_the_cookie_is_hardened_on_loopback_without_secure(client: Client) -> None:
    await client.register()
    name, secret, attributes = set_cookie(await client.login())
    assert name == "watchword_session"
    assert "httponly" in attributes and "secure" not in attributes
    assert attributes["samesite"].lower() == "lax" and attributes["path"] == "/"
    assert "domain" not in attributes
    # 256 bits of randomness, URL-safe base64 without padding.
    assert len(secret) == 43 and secret.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize("overrides", [{"cookie_secure": True}, {"host": "0.0.0.0"}])
async def test_the_cookie_is_secure_with_the_host_prefix_for_https(
    client_factory: ClientFactory, overrides: dict[str, object]
) -> None:
    client = await client_factory(**overrides)
    await client.register()
    response = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={"Origin": client.container.settings.issuer},
    )
    assert response.status_code == 200, response.text
    name, secret, attributes = set_cookie(response)
    assert name == "__Host-watchword_session"
    assert "secure" in attributes and "httponly" in attributes and "domain" not in attributes
    assert attributes["path"] == "/"
    me = await client.get("/v1/me", headers={"Cookie": f"{name}={secret}"})
    assert me.status_code == 200
    # The unprefixed name is not ours any more.
    plain = await client.get("/v1/me", headers={"Cookie": f"watchword_session={secret}"})
    assert plain.status_code == 401


async def test_the_cookie_name_is_configurable(client_factory: ClientFactory) -> None:
    client = await client_factory(cookie_name="ww")
    await client.register()
    name, _, _ = set_cookie(await client.login())
    assert name == "ww"
    assert (await client.get("/v1/me")).status_code == 200


async def test_every_login_gets_a_new_secret_and_a_planted_cookie_is_never_adopted(
    client: Client,
) -> None:
    await client.register()
    planted = "attacker-chosen-session-value-0123456789abc"
    client.cookies.set("watchword_session", planted)
    first = await client.login()
    _, secret_one, _ = set_cookie(first)
    assert secret_one != planted
    second = await client.login()
    _, secret_two, _ = set_cookie(second)
    assert secret_two not in (secret_one, planted)
    assert first.json()["session"]["id"] != second.json()["session"]["id"]
    stored = await client.container.db.sessions.get_by_secret_hash(sha256_hex(planted))
    assert stored is None
    client.cookies.clear()
    planted_me = await client.get("/v1/me", headers={"Cookie": f"watchword_session={planted}"})
    assert planted_me.status_code == 401
    assert planted_me.json()["error"] == "invalid_session"


async def test_unknown_email_and_wrong_password_get_the_same_answer_and_both_verify(
    hasher_client: HasherClientFactory,
) -> None:
    hasher = CountingHasher()
    client = await hasher_client(hasher)
    await client.register()
    hasher.verified.clear()
    wrong = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": "wrong password"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": "bob@example.com", "password": "wrong password"}
    )
    malformed = await client.post(
        "/v1/auth/login", json={"email": "not an email", "password": "wrong password"}
    )
    for response in (wrong, unknown, malformed):
        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_credentials",
            "message": "The email or password is incorrect.",
        }
        assert "set-cookie" not in response.headers
    assert set(wrong.headers) == set(unknown.headers)
    # One argon2 verification each: against the real hash, then against the dummy hash.
    assert len(hasher.verified) == 3
    assert hasher.verified[0] is not None and hasher.verified[1:] == [None, None]


async def test_failed_and_successful_sign_ins_are_audited(client: Client) -> None:
    user = await client.register()
    bad = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": "wrong password"},
        headers={"User-Agent": "curl/8.0"},
    )
    assert bad.status_code == 401
    good = await client.login()
    session_id = good.json()["session"]["id"]
    events = await client.container.db.audit.for_user(user["id"])
    assert [e.type for e in events] == [
        AuditType.LOGIN_SUCCEEDED,
        AuditType.LOGIN_FAILED,
        AuditType.USER_REGISTERED,
    ]
    assert events[0].session_id == session_id and events[0].ip == "127.0.0.1"
    assert events[1].user_agent == "curl/8.0" and events[1].details["reason"] == "bad_password"
    tail = await client.container.db.audit.tail(limit=50)
    unknown = [e for e in tail if e.details.get("reason") == "unknown_email"]
    assert unknown == []
    await client.post("/v1/auth/login", json={"email": "x@example.com", "password": "whatever1"})
    tail = await client.container.db.audit.tail(limit=50)
    assert tail[-1].type == AuditType.LOGIN_FAILED and tail[-1].user_id is None
    assert all(PASSWORD not in str(e.public()) for e in tail)


async def test_a_disabled_account_cannot_sign_in(client: Client) -> None:
    user = await client.register()
    await client.container.accounts.set_disabled(user["id"], True, ctx=_cli_ctx(), actor_id="test")
    response = await client.post(
        "/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "account_disabled"
    assert (
        await client.container.db.sessions.list_live(user["id"], client.container.clock.now()) == []
    )


def _cli_ctx():  # type: ignore[no-untyped-def]
    from watchword.services.context import CLI

    return CLI


async def test_a_login_storm_runs_bounded_in_threads_and_does_not_stall_the_server(
    hasher_client: HasherClientFactory,
) -> None:
    hasher = CountingHasher()
    client = await hasher_client(hasher, hashing_concurrency=2, login_rate_limit_ip="1000/minute")
    await client.register()
    hasher.gate = threading.Event()
    hasher.max_inside = 0
    storm = [
        asyncio.create_task(
            client.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        )
        for _ in range(8)
    ]
    try:
        for _ in range(1000):
            if hasher.inside == 2:
                break
            await asyncio.sleep(0.01)
        assert hasher.inside == 2
        # Two logins hold their hashing slots; the event loop still answers everyone else.
        for _ in range(5):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/v1/me")).status_code == 401
        assert not any(task.done() for task in storm)
        assert hasher.max_inside == 2
    finally:
        hasher.gate.set()
    responses = await asyncio.gather(*storm)
    assert [r.status_code for r in responses] == [200] * 8
    assert hasher.max_inside == 2


# -- rate limiting ----------------------------------------------------------------------------


async def test_sign_in_is_rate_limited_per_account(client_factory: ClientFactory) -> None:
    client = await client_factory(login_rate_limit_account="3/minute", trust_forwarded_for=True)
    await client.register()
    for n in range(3):
        response = await client.post(
            "/v1/auth/login",
            json={"email": "alice@example.com", "password": "wrong password"},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        )
        assert response.status_code == 401
    # Another address, and even the right password: the account's budget is spent.
    limited = await client.post(
        "/v1/auth/login",
        json={"email": "Alice@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    events = await client.container.db.audit.tail(limit=10)
    assert events[-1].type == AuditType.LOGIN_RATE_LIMITED and events[-1].ip == "203.0.113.7"
    # Other accounts are not affected.
    await client.register("bob@example.com")
    await client.login("bob@example.com")


async def test_successful_sign_ins_do_not_spend_the_account_budget(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(login_rate_limit_account="2/minute")
    await client.register()
    for _ in range(5):
        await client.login()


async def test_sign_in_is_rate_limited_per_client_address(client_factory: ClientFactory) -> None:
    client = await client_factory(login_rate_limit_ip="4/minute")
    for n in range(4):
        response = await client.post(
            "/v1/auth/login", json={"email": f"user{n}@example.com", "password": "whatever1"}
        )
        assert response.status_code == 401
    limited = await client.post(
        "/v1/auth/login", json={"email": "user9@example.com", "password": "whatever1"}
    )
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_a_spoofed_forwarded_for_does_not_escape_the_per_address_limit(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(login_rate_limit_ip="3/minute", trust_forwarded_for=True)
    for n in range(3):
        response = await client.post(
            "/v1/auth/login",
            json={"email": f"user{n}@example.com", "password": "whatever1"},
            headers={"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.9"},  # client part, proxy part
        )
        assert response.status_code == 401
    limited = await client.post(
        "/v1/auth/login",
        json={"email": "user9@example.com", "password": "whatever1"},
        headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.9"},
    )
    assert limited.status_code == 429
    events = await client.container.db.audit.tail(limit=5)
    assert {e.ip for e in events} == {"203.0.113.9"}
