"""TOTP as a second factor: enrolment, the challenge step of a sign-in in both modes, single
use of codes and challenges, recovery codes, throttling, and the step-up asking for the code."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, ManualClock
from tests.pages.conftest import make_admin
from watchword.domain.audit import AuditType


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    return {}


class Account:
    def __init__(self, client: Client, email: str, user_id: str, secret: str, codes: list[str]):
        self.client = client
        self.email = email
        self.user_id = user_id
        self.secret = secret
        self.recovery_codes = codes

    def code(self, clock: ManualClock) -> str:
        return pyotp.TOTP(self.secret).at(clock.now())


async def enrolled(client_factory: ClientFactory, clock: ManualClock, **settings: Any) -> Account:
    """A signed-in user with TOTP on (the enrolment used the current time step)."""
    client = await client_factory(**settings)
    email = f"totp-{id(client)}@example.com"
    user = await client.register(email)
    await client.login(email)
    started = await client.post("/v1/me/mfa/totp")
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200, confirmed.text
    return Account(client, email, user["id"], secret, confirmed.json()["recovery_codes"])


async def types_for(client: Client, user_id: str) -> list[str]:
    return [e.type for e in await client.container.db.audit.for_user(user_id, limit=200)]


async def challenge(client: Client, email: str, **extra: Any) -> str:
    response = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, **extra}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True and body["methods"] == ["totp", "recovery_code"]
    assert "set-cookie" not in response.headers
    assert "csrf_token" not in body and "access_token" not in body
    return str(body["challenge"])


async def test_enrolment_gives_a_sealed_secret_its_uri_and_qr_then_a_code_turns_it_on(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client = await client_factory(ui_title="Acme ID", **db_settings)
    email = f"enrol-{id(client)}@example.com"
    user = await client.register(email)
    added: list[tuple[str, str]] = []

    async def hook(user_id: str, event: str, data: dict[str, Any]) -> None:
        if event.startswith("security.mfa"):
            added.append((user_id, event))

    client.container.lifecycle.on_security_event(hook)
    await client.login(email)
    assert (await client.get("/v1/me/mfa")).json() == {
        "totp": False,
        "recovery_codes_left": 0,
        "passkeys": 0,
    }
    started = await client.post("/v1/me/mfa/totp")
    assert started.status_code == 200, started.text
    body = started.json()
    secret = body["secret"]
    assert len(secret) == 32 and pyotp.TOTP(secret).now().isdigit()
    parsed = pyotp.parse_uri(body["otpauth_uri"])
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert parsed.issuer == "Acme ID" and parsed.secret == secret
    assert body["qr_svg"].startswith("<svg") and "</svg>" in body["qr_svg"]

    stored = await client.container.account_stores.mfa.get_totp(user["id"])
    assert stored is not None and not stored.active
    assert secret not in stored.secret_sealed  # sealed by the master key, not in clear
    assert client.container.master_key.unseal(stored.secret_sealed).decode() == secret

    wrong = await client.post("/v1/me/mfa/totp/confirm", json={"code": "000000"})
    if pyotp.TOTP(secret).verify("000000", for_time=clock.now(), valid_window=1):
        pytest.skip("the random secret's code is 000000")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_mfa_code"
    # Still off until a right code confirms it.
    assert (await client.get("/v1/me/mfa")).json()["totp"] is False

    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c.replace("-", "")) == 32 for c in codes)  # 160 bits of base32
    assert (await client.get("/v1/me/mfa")).json() == {
        "totp": True,
        "recovery_codes_left": 10,
        "passkeys": 0,
    }
    again = await client.post("/v1/me/mfa/totp")
    assert again.status_code == 409 and again.json()["error"] == "mfa_already_enabled"
    types = await types_for(client, user["id"])
    assert AuditType.MFA_ADDED in types and AuditType.MFA_ENROLMENT_STARTED in types
    assert [e for _, e in added] == ["security.mfa_failed", "security.mfa_added"]
    assert {u for u, _ in added} == {user["id"]}


async def test_a_cookie_sign_in_waits_for_the_code_and_then_carries_mfa(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    account = await enrolled(client_factory, clock, **db_settings)
    clock.advance(30)  # the enrolment used the current step
    browser = await client_factory(**db_settings)
    live_before = await account.client.container.db.sessions.list_live(account.user_id, clock.now())
    value = await challenge(browser, account.email, device_name="laptop")
    live = await account.client.container.db.sessions.list_live(account.user_id, clock.now())
    assert len(live) == len(live_before)  # no session for a password alone
    assert (await browser.get("/v1/me")).status_code == 401
    stored = await account.client.container.account_stores.mfa.get_challenge(value)
    assert stored is None  # stored hashed

    done = await browser.post(
        "/v1/auth/mfa", json={"challenge": value, "code": account.code(clock)}
    )
    assert done.status_code == 200, done.text
    assert "set-cookie" in done.headers and done.json()["csrf_token"]
    assert done.json()["session"]["device"]["name"] == "laptop"
    me = (await browser.get("/v1/me")).json()
    assert me["authentication"]["amr"] == ["pwd", "otp", "mfa"]
    assert me["authentication"]["acr"] == "aal2"

    clock.advance(30)
    used = await browser.post(
        "/v1/auth/mfa", json={"challenge": value, "code": account.code(clock)}
    )
    assert used.status_code == 401 and used.json()["error"] == "invalid_challenge"


async def test_a_token_sign_in_completes_with_a_token_pair_carrying_mfa(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    account = await enrolled(client_factory, clock, **db_settings)
    clock.advance(30)
    api = await client_factory(**db_settings)
    value = await challenge(api, account.email, mode="token")
    done = await api.post("/v1/auth/mfa", json={"challenge": value, "code": account.code(clock)})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["access_token"] and body["refresh_token"] and "set-cookie" not in done.headers
    me = await api.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["authentication"]["amr"] == ["pwd", "otp", "mfa"]
    claims = await api.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert claims.status_code == 200, claims.text


async def test_a_code_is_accepted_once_per_time_step(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    account = await enrolled(client_factory, clock)
    # The step that confirmed the enrolment cannot sign in.
    replay = await account.client.post(
        "/v1/auth/mfa",
        json={
            "challenge": await challenge(account.client, account.email),
            "code": account.code(clock),
        },
    )
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_mfa_code"
    clock.advance(30)
    code = account.code(clock)
    first = await account.client.post(
        "/v1/auth/mfa",
        json={"challenge": await challenge(account.client, account.email), "code": code},
    )
    assert first.status_code == 200, first.text
    second = await account.client.post(
        "/v1/auth/mfa",
        json={"challenge": await challenge(account.client, account.email), "code": code},
    )
    assert second.status_code == 401 and second.json()["error"] == "invalid_mfa_code"
    # The previous step's code (within the window) is older than the used one: refused too.
    previous = pyotp.TOTP(account.secret).at(clock.now(), counter_offset=-1)
    older = await account.client.post(
        "/v1/auth/mfa",
        json={"challenge": await challenge(account.client, account.email), "code": previous},
    )
    assert older.status_code == 401
    types = await types_for(account.client, account.user_id)
    assert AuditType.MFA_FAILED in types


async def test_wrong_codes_and_expired_challenges_are_refused(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    account = await enrolled(client_factory, clock)
    events: list[tuple[str, str]] = []

    async def hook(user_id: str, event: str, data: dict[str, Any]) -> None:
        events.append((user_id, event))

    account.client.container.lifecycle.on_security_event(hook)
    clock.advance(30)
    value = await challenge(account.client, account.email)
    right = account.code(clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = await account.client.post("/v1/auth/mfa", json={"challenge": value, "code": wrong})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_mfa_code"
    assert (account.user_id, "security.mfa_failed") in events
    far = pyotp.TOTP(account.secret).at(clock.now(), counter_offset=2)  # outside the window
    outside = await account.client.post("/v1/auth/mfa", json={"challenge": value, "code": far})
    assert outside.status_code == 401

    unknown = await account.client.post(
        "/v1/auth/mfa", json={"challenge": "not-a-challenge", "code": right}
    )
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_challenge"

    clock.advance(301)  # the challenge lives five minutes
    late = await account.client.post(
        "/v1/auth/mfa", json={"challenge": value, "code": account.code(clock)}
    )
    assert late.status_code == 401 and late.json()["error"] == "invalid_challenge"
    fresh = await challenge(account.client, account.email)
    ok = await account.client.post(
        "/v1/auth/mfa", json={"challenge": fresh, "code": account.code(clock)}
    )
    assert ok.status_code == 200, ok.text


async def test_a_recovery_code_signs_in_once(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    account = await enrolled(client_factory, clock, **db_settings)
    events: list[str] = []

    async def hook(user_id: str, event: str, data: dict[str, Any]) -> None:
        events.append(event)

    code = account.recovery_codes[3]
    browser = await client_factory(**db_settings)
    browser.container.lifecycle.on_security_event(hook)
    value = await challenge(browser, account.email)
    done = await browser.post(
        "/v1/auth/mfa", json={"challenge": value, "code": code.lower().replace("-", " ")}
    )
    assert done.status_code == 200, done.text
    me = (await browser.get("/v1/me")).json()
    assert me["authentication"]["amr"] == ["pwd", "mfa"]
    assert me["authentication"]["acr"] == "aal2"
    assert "security.recovery_code_used" in events
    assert (await browser.get("/v1/me/mfa")).json()["recovery_codes_left"] == 9

    again = await browser.post(
        "/v1/auth/mfa", json={"challenge": await challenge(browser, account.email), "code": code}
    )
    assert again.status_code == 401 and again.json()["error"] == "invalid_mfa_code"
    types = await types_for(account.client, account.user_id)
    assert AuditType.RECOVERY_CODE_USED in types


async def test_wrong_codes_spend_the_sign_in_budget(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    account = await enrolled(client_factory, clock, login_rate_limit_account="3/minute")
    clock.advance(30)
    value = await challenge(account.client, account.email)
    right = account.code(clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(3):
        refused = await account.client.post(
            "/v1/auth/mfa", json={"challenge": value, "code": wrong}
        )
        assert refused.status_code == 401
    limited = await account.client.post("/v1/auth/mfa", json={"challenge": value, "code": right})
    assert limited.status_code == 429, limited.text
    # The password step shares the budget.
    login = await account.client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert login.status_code == 429


async def test_challenge_guessing_spends_the_address_budget(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(login_rate_limit_ip="3/minute")
    statuses = [
        (
            await client.post("/v1/auth/mfa", json={"challenge": f"guess-{i}", "code": "123456"})
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


async def test_step_up_asks_for_the_second_factor_and_guards_factor_changes(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    account = await enrolled(client_factory, clock, reauth_max_age=300)
    client = account.client
    events: list[str] = []

    async def hook(user_id: str, event: str, data: dict[str, Any]) -> None:
        events.append(event)

    client.container.lifecycle.on_security_event(hook)
    clock.advance(301)
    for method, path in [("DELETE", "/v1/me/mfa/totp"), ("POST", "/v1/me/mfa/recovery-codes")]:
        stale = await client.request(method, path)
        assert stale.status_code == 401 and stale.json()["error"] == "reauth_required", path

    password_only = await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    assert password_only.status_code == 401
    assert password_only.json()["error"] == "mfa_code_required"
    right = account.code(clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    bad = await client.post("/v1/auth/reauth", json={"password": PASSWORD, "code": wrong})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_mfa_code"
    ok = await client.post("/v1/auth/reauth", json={"password": PASSWORD, "code": right})
    assert ok.status_code == 200, ok.text
    assert ok.json()["amr"] == ["pwd", "otp", "mfa"]

    renewed = await client.post("/v1/me/mfa/recovery-codes")
    assert renewed.status_code == 200, renewed.text
    new_codes = renewed.json()["recovery_codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(account.recovery_codes)
    browser = await client_factory()
    old = await browser.post(
        "/v1/auth/mfa",
        json={
            "challenge": await challenge(browser, account.email),
            "code": account.recovery_codes[0],
        },
    )
    assert old.status_code == 401  # the previous set stopped working

    removed = await client.delete("/v1/me/mfa/totp")
    assert removed.status_code == 200, removed.text
    assert (await client.delete("/v1/me/mfa/totp")).status_code == 404
    plain = await browser.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert plain.status_code == 200 and "csrf_token" in plain.json()
    types = await types_for(client, account.user_id)
    assert AuditType.MFA_REMOVED in types and AuditType.RECOVERY_CODES_REPLACED in types
    assert AuditType.STEP_UP in types
    for event in ("security.mfa_failed", "security.step_up", "security.recovery_codes_replaced"):
        assert event in events, event
    assert events[-1] == "security.mfa_removed"


async def test_factor_changes_need_a_persons_session(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    anonymous = await client_factory()
    for method, path in [
        ("POST", "/v1/me/mfa/totp"),
        ("POST", "/v1/me/mfa/totp/confirm"),
        ("DELETE", "/v1/me/mfa/totp"),
        ("POST", "/v1/me/mfa/recovery-codes"),
    ]:
        response = await anonymous.request(method, path, json={"code": "123456"})
        assert response.status_code == 401, (path, response.text)
    account = await enrolled(client_factory, clock)
    created = await account.client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["profile", "sessions"]}
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    for method, path in [("DELETE", "/v1/me/mfa/totp"), ("POST", "/v1/me/mfa/recovery-codes")]:
        refused = await anonymous.request(method, path, headers=key)
        assert refused.status_code == 403, (path, refused.text)
    assert (await account.client.get("/v1/me/mfa")).json()["recovery_codes_left"] == 10
    del account.client.headers["X-CSRF-Token"]
    forged = await account.client.post("/v1/me/mfa/recovery-codes")
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"


async def test_roles_that_need_a_second_factor_refuse_a_password_only_session(
    client_factory: ClientFactory, clock: ManualClock
) -> None:
    client = await client_factory(mfa_required_roles="admin,auditor")
    assert client.container.settings.mfa_required_roles == ["admin", "auditor"]
    await make_admin(client)
    await client.login("root@example.com")
    # No second factor yet: enrolling one is all this user may do.
    for path in ("/v1/admin/users", "/v1/sessions"):
        refused = await client.get(path)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"] == "mfa_enrolment_required"
    keys = await client.post("/v1/api-keys", json={"name": "ci", "scopes": "profile"})
    assert keys.status_code == 403 and keys.json()["error"] == "mfa_enrolment_required"
    assert (await client.get("/v1/me")).status_code == 200  # who am I, and enrolment, work
    assert (await client.get("/v1/me/mfa")).status_code == 200

    started = await client.post("/v1/me/mfa/totp")
    secret = started.json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert confirmed.status_code == 200
    assert (await client.get("/v1/sessions")).status_code == 200  # enrolled: the rest opens
    # This session was signed in with a password only: the admin role's routes refuse it.
    refused = await client.get("/v1/admin/users")
    assert refused.status_code == 403 and refused.json()["error"] == "mfa_required"
    clock.advance(30)
    value = await challenge(client, "root@example.com")
    done = await client.post(
        "/v1/auth/mfa", json={"challenge": value, "code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert done.status_code == 200, done.text
    client.headers["X-CSRF-Token"] = done.json()["csrf_token"]
    assert (await client.get("/v1/admin/users")).status_code == 200
