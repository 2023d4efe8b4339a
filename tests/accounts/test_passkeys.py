"""Passkeys (WebAuthn) with a software authenticator: registration, the list, a sign-in
without an email in both modes, the passkey as a second factor, and every refusal: another
origin or relying party, a replayed or expired challenge, a cloned authenticator, an unknown
or removed passkey. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from tests.accounts.authenticator import SoftwareAuthenticator, b64url
from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD, ManualClock
from watchword.domain.audit import AuditType
from watchword.services.context import RequestContext

PUBLIC_URL = "http://localhost:8000"
ORIGIN = PUBLIC_URL
RP_ID = "localhost"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {"public_url": PUBLIC_URL}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("postgres_url")
    return settings


class Events:
    def __init__(self, client: Client) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        client.container.lifecycle.on_security_event(self._hook)

    async def _hook(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        self.seen.append((user_id, event, data))

    def names(self) -> list[str]:
        return [event for _, event, _ in self.seen]


async def signed_in(client_factory: ClientFactory, **settings: Any) -> tuple[Client, str, str]:
    client = await client_factory(**settings)
    email = f"pk-{id(client)}@example.com"
    user = await client.register(email)
    await client.login(email)
    return client, email, user["id"]


async def add_passkey(
    client: Client, authenticator: SoftwareAuthenticator, name: str | None = "Laptop"
) -> dict[str, Any]:
    options = await client.post("/v1/me/passkeys/options")
    assert options.status_code == 200, options.text
    body: dict[str, Any] = {"credential": authenticator.create(options.json())}
    if name is not None:
        body["name"] = name
    added = await client.post("/v1/me/passkeys", json=body)
    assert added.status_code == 201, added.text
    return dict(added.json()["passkey"])


async def sign_in_options(client: Client) -> dict[str, Any]:
    response = await client.post("/v1/auth/passkey/options")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def audit_of(client: Client, user_id: str) -> list[Any]:
    """Oldest first."""
    return list(reversed(await client.container.db.audit.for_user(user_id, limit=200)))


async def test_a_passkey_registers_and_is_listed_renamed_and_removed(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, **db_settings)
    events = Events(client)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    options = (await client.post("/v1/me/passkeys/options")).json()
    # Discoverable, no attestation, the relying party from WATCHWORD_PUBLIC_URL.
    assert options["rp"]["id"] == RP_ID
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["attestation"] == "none"

    passkey = await add_passkey(client, authenticator)
    assert passkey["name"] == "Laptop" and passkey["last_used_at"] is None
    assert passkey["transports"] == ["internal"] and passkey["backed_up"] is False
    listed = (await client.get("/v1/me/passkeys")).json()["passkeys"]
    assert [p["id"] for p in listed] == [passkey["id"]]
    assert (await client.get("/v1/me/mfa")).json()["passkeys"] == 1

    # The same authenticator's next options exclude the credential it already holds.
    again = (await client.post("/v1/me/passkeys/options")).json()
    excluded = [c["id"] for c in again["excludeCredentials"]]
    assert excluded == [b64url(authenticator.credentials[0].id)]

    renamed = await client.patch(f"/v1/me/passkeys/{passkey['id']}", json={"name": "Phone"})
    assert renamed.status_code == 200 and renamed.json()["passkey"]["name"] == "Phone"
    bad = await client.patch(f"/v1/me/passkeys/{passkey['id']}", json={"name": "a\x00b"})
    assert bad.status_code in (400, 422)

    removed = await client.delete(f"/v1/me/passkeys/{passkey['id']}")
    assert removed.status_code == 200, removed.text
    assert (await client.get("/v1/me/passkeys")).json()["passkeys"] == []
    gone = await client.delete(f"/v1/me/passkeys/{passkey['id']}")
    assert gone.status_code == 404

    types = [e.type for e in await audit_of(client, user_id)]
    assert AuditType.MFA_ADDED in types and AuditType.MFA_REMOVED in types
    assert AuditType.PASSKEY_RENAMED in types
    assert events.names() == ["security.mfa_added", "security.mfa_removed"]
    assert all(data["method"] == "passkey" for _, _, data in events.seen)


async def test_a_discoverable_passkey_signs_in_without_an_email_in_both_modes(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    passkey = await add_passkey(client, authenticator)
    events = Events(client)

    options = await sign_in_options(client)
    assert options["rpId"] == RP_ID and options.get("allowCredentials", []) == []
    assert options["userVerification"] == "required"
    clock.advance(5)
    done = await client.post(
        "/v1/auth/passkey",
        json={"credential": authenticator.get(options), "device_name": "Laptop"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["user"]["id"] == user_id
    assert "set-cookie" in done.headers
    client.headers["X-CSRF-Token"] = done.json()["csrf_token"]
    me = (await client.get("/v1/me")).json()
    assert me["authentication"]["amr"] == ["hwk", "mfa"]
    assert me["authentication"]["acr"] == "aal2"
    listed = (await client.get("/v1/me/passkeys")).json()["passkeys"]
    assert listed[0]["id"] == passkey["id"]
    assert listed[0]["last_used_at"] == clock.now().isoformat()

    token = await client.post(
        "/v1/auth/passkey",
        json={"credential": authenticator.get(await sign_in_options(client)), "mode": "token"},
    )
    assert token.status_code == 200, token.text
    import jwt

    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user_id and claims["amr"] == ["hwk", "mfa"]

    # A synced passkey (backup eligible and backed up) is a software-held key.
    synced = SoftwareAuthenticator(ORIGIN, RP_ID, backed_up=True)
    await add_passkey(client, synced, name="Synced")
    via_synced = await client.post(
        "/v1/auth/passkey",
        json={"credential": synced.get(await sign_in_options(client)), "mode": "token"},
    )
    claims = jwt.decode(via_synced.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["swk", "mfa"]

    types = [e.type for e in await audit_of(client, user_id)]
    assert types.count(AuditType.PASSKEY_USED) == 3
    assert events.names().count("security.passkey_used") == 3


async def test_a_discoverable_sign_in_needs_user_verification(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client, _, _ = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    await add_passkey(client, authenticator)
    present_only = authenticator.get(await sign_in_options(client), user_verified=False)
    refused = await client.post("/v1/auth/passkey", json={"credential": present_only})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"


async def test_a_passkey_completes_a_password_sign_in_as_the_second_factor(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, email, user_id = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    await add_passkey(client, authenticator)
    other = SoftwareAuthenticator(ORIGIN, RP_ID)

    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["mfa_required"] is True and body["methods"] == ["webauthn"]
    assert "set-cookie" not in login.headers
    options = await client.post(
        "/v1/auth/mfa/passkey/options", json={"challenge": body["challenge"]}
    )
    assert options.status_code == 200, options.text
    allowed = options.json()["allowCredentials"]
    assert len(allowed) == 1 and options.json()["userVerification"] == "preferred"

    # A code where a passkey is the only factor, or no answer at all, is refused.
    code = await client.post(
        "/v1/auth/mfa", json={"challenge": body["challenge"], "code": "123456"}
    )
    assert code.status_code == 401 and code.json()["error"] == "invalid_mfa_code"
    empty = await client.post("/v1/auth/mfa", json={"challenge": body["challenge"]})
    assert empty.status_code == 401

    # Another user's passkey (registered elsewhere) cannot answer this user's challenge.
    stranger, _, _ = await signed_in(client_factory, **db_settings)
    await add_passkey(stranger, other)
    foreign = other.get(options.json() | {"allowCredentials": []})
    wrong = await client.post(
        "/v1/auth/mfa", json={"challenge": body["challenge"], "credential": foreign}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_passkey"

    options = await client.post(
        "/v1/auth/mfa/passkey/options", json={"challenge": body["challenge"]}
    )
    done = await client.post(
        "/v1/auth/mfa",
        json={"challenge": body["challenge"], "credential": authenticator.get(options.json())},
    )
    assert done.status_code == 200, done.text
    client.headers["X-CSRF-Token"] = done.json()["csrf_token"]
    me = (await client.get("/v1/me")).json()
    assert me["authentication"]["amr"] == ["pwd", "hwk", "mfa"]
    reused = await client.post(
        "/v1/auth/mfa/passkey/options", json={"challenge": body["challenge"]}
    )
    assert reused.status_code == 401 and reused.json()["error"] == "invalid_challenge"

    # With TOTP on as well, every method is offered.
    started = (await client.post("/v1/me/mfa/totp")).json()
    await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(started["secret"]).at(clock.now())}
    )
    both = (await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    assert both["methods"] == ["totp", "recovery_code", "webauthn"]
    types = [e.type for e in await audit_of(client, user_id)]
    assert AuditType.MFA_FAILED in types and AuditType.PASSKEY_USED in types


async def test_responses_made_for_another_origin_or_relying_party_are_refused(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)

    for forged in ({"origin": "http://evil.example:8000"}, {"rp_id": "evil.example"}):
        options = (await client.post("/v1/me/passkeys/options")).json()
        response = await client.post(
            "/v1/me/passkeys", json={"credential": authenticator.create(options, **forged)}
        )
        assert response.status_code == 400, (forged, response.text)
        assert response.json()["error"] == "invalid_passkey_registration"
    assert (await client.get("/v1/me/passkeys")).json()["passkeys"] == []

    await add_passkey(client, authenticator)
    for forged in ({"origin": "http://evil.example:8000"}, {"rp_id": "evil.example"}):
        credential = authenticator.get(await sign_in_options(client), **forged)
        response = await client.post("/v1/auth/passkey", json={"credential": credential})
        assert response.status_code == 401, (forged, response.text)
        assert response.json()["error"] == "invalid_passkey"
        assert "set-cookie" not in response.headers
    reasons = [
        e.details.get("reason")
        for e in await audit_of(client, user_id)
        if e.type == AuditType.PASSKEY_FAILED
    ]
    assert reasons == ["registration", "registration", "assertion", "assertion"]


async def test_a_challenge_answers_once_and_expires(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, _, _ = await signed_in(client_factory, passkey_challenge_ttl=60, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID, counter_step=0)  # no counter
    await add_passkey(client, authenticator)

    credential = authenticator.get(await sign_in_options(client))
    first = await client.post("/v1/auth/passkey", json={"credential": credential, "mode": "token"})
    assert first.status_code == 200, first.text
    replayed = await client.post(
        "/v1/auth/passkey", json={"credential": credential, "mode": "token"}
    )
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_passkey"

    # A fresh signature over a challenge nobody issued is refused too.
    made_up = authenticator.get({"challenge": "bm90LWlzc3VlZC1ieS10aGUtc2VydmVy"})
    refused = await client.post("/v1/auth/passkey", json={"credential": made_up})
    assert refused.status_code == 401

    late = await sign_in_options(client)
    clock.advance(61)
    expired = await client.post("/v1/auth/passkey", json={"credential": authenticator.get(late)})
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_passkey"

    # A registration challenge answers once as well.
    options = (await client.post("/v1/me/passkeys/options")).json()
    other = SoftwareAuthenticator(ORIGIN, RP_ID)
    await client.post("/v1/auth/reauth", json={"password": PASSWORD})
    registration = other.create(options)
    assert (
        await client.post("/v1/me/passkeys", json={"credential": registration})
    ).status_code == 201
    again = await client.post("/v1/me/passkeys", json={"credential": registration})
    assert again.status_code == 400 and again.json()["error"] == "invalid_passkey_registration"


async def test_a_cloned_authenticator_is_refused_when_its_counter_goes_back(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    await add_passkey(client, authenticator)
    events = Events(client)
    clone = authenticator.clone()

    ok = await client.post(
        "/v1/auth/passkey",
        json={"credential": authenticator.get(await sign_in_options(client)), "mode": "token"},
    )
    assert ok.status_code == 200, ok.text
    # The clone signs with the same key and the counter value the original just used.
    copied = clone.get(await sign_in_options(client))
    refused = await client.post("/v1/auth/passkey", json={"credential": copied, "mode": "token"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"
    failed = [e for e in await audit_of(client, user_id) if e.type == AuditType.PASSKEY_FAILED]
    assert [e.details["reason"] for e in failed] == ["sign_count"]
    assert "security.passkey_refused" in events.names()
    # The original, whose counter moves on, still signs in.
    again = await client.post(
        "/v1/auth/passkey",
        json={"credential": authenticator.get(await sign_in_options(client)), "mode": "token"},
    )
    assert again.status_code == 200, again.text


async def anonymous_refusals(client: Client) -> int:
    """Audit lines of passkeys refused as unknown (the database may be shared)."""
    return sum(
        1
        for e in await client.container.db.audit.tail(limit=1000)
        if e.type == AuditType.PASSKEY_FAILED
        and e.user_id is None
        and e.details.get("reason") == "unknown_credential"
    )


async def test_an_unknown_or_removed_passkey_cannot_sign_in(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client, _, _ = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    before = await anonymous_refusals(client)
    # Never registered: the authenticator made a key the server never saw.
    stray = SoftwareAuthenticator(ORIGIN, RP_ID)
    stray.create(
        {
            "rp": {"id": RP_ID},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "user": {"id": b64url(b"someone")},
            "challenge": b64url(b"never sent"),
        }
    )
    unknown = await client.post(
        "/v1/auth/passkey", json={"credential": stray.get(await sign_in_options(client))}
    )
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_passkey"

    passkey = await add_passkey(client, authenticator)
    assert (await client.delete(f"/v1/me/passkeys/{passkey['id']}")).status_code == 200
    removed = await client.post(
        "/v1/auth/passkey", json={"credential": authenticator.get(await sign_in_options(client))}
    )
    assert removed.status_code == 401 and removed.json()["error"] == "invalid_passkey"
    # An unknown credential names no user: the audit lines have none.
    assert await anonymous_refusals(client) == before + 2


async def test_passkey_changes_need_a_recent_sign_in_of_a_persons_session(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, _, _ = await signed_in(client_factory, reauth_max_age=300, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    passkey = await add_passkey(client, authenticator)
    clock.advance(301)
    stale = await client.post("/v1/me/passkeys/options")
    assert stale.status_code == 401 and stale.json()["error"] == "reauth_required"
    stale = await client.delete(f"/v1/me/passkeys/{passkey['id']}")
    assert stale.status_code == 401 and stale.json()["error"] == "reauth_required"
    del client.headers["X-CSRF-Token"]
    forged = await client.post("/v1/me/passkeys/options")
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
    anonymous = await client_factory(**db_settings)
    nobody = await anonymous.post("/v1/me/passkeys/options")
    assert nobody.status_code == 401


async def test_a_role_that_needs_a_second_factor_can_enrol_a_passkey_and_then_use_it(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client = await client_factory(mfa_required_roles="admin", **db_settings)
    email = f"root-{id(client)}@example.com"
    await client.container.accounts.register(
        email=email,
        password=PASSWORD,
        roles=["admin"],
        ctx=RequestContext(),
        self_service=False,
    )
    await client.login(email)
    refused = await client.get("/v1/sessions")
    assert refused.status_code == 403 and refused.json()["error"] == "mfa_enrolment_required"
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    passkey = await add_passkey(client, authenticator)  # enrolment stays open
    assert (await client.get("/v1/sessions")).status_code == 200
    password_only = await client.get("/v1/admin/users")
    assert password_only.status_code == 403 and password_only.json()["error"] == "mfa_required"

    done = await client.post(
        "/v1/auth/passkey", json={"credential": authenticator.get(await sign_in_options(client))}
    )
    assert done.status_code == 200, done.text
    client.headers["X-CSRF-Token"] = done.json()["csrf_token"]
    assert (await client.get("/v1/admin/users")).status_code == 200

    # Removing the last factor closes everything but enrolment again, at once.
    assert (await client.delete(f"/v1/me/passkeys/{passkey['id']}")).status_code == 200
    again = await client.get("/v1/admin/users")
    assert again.status_code == 403 and again.json()["error"] == "mfa_enrolment_required"


async def test_a_passkey_steps_the_session_up_in_place_of_the_password(
    client_factory: ClientFactory, clock: ManualClock, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, reauth_max_age=300, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    passkey = await add_passkey(client, authenticator)
    clock.advance(301)
    stale = await client.delete(f"/v1/me/passkeys/{passkey['id']}")
    assert stale.status_code == 401 and stale.json()["error"] == "reauth_required"

    options = await client.post("/v1/auth/reauth/passkey/options")
    assert options.status_code == 200, options.text
    assert options.json()["userVerification"] == "required"
    assert len(options.json()["allowCredentials"]) == 1
    # Presence alone does not stand in for a password: the key must verify its user.
    unverified = authenticator.get(options.json(), user_verified=False)
    refused = await client.post("/v1/auth/reauth", json={"credential": unverified})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"

    credential = authenticator.get((await client.post("/v1/auth/reauth/passkey/options")).json())
    done = await client.post("/v1/auth/reauth", json={"credential": credential})
    assert done.status_code == 200, done.text
    assert done.json()["amr"] == ["hwk", "mfa"]
    assert done.json()["auth_time"] == int(clock.now().timestamp())
    replayed = await client.post("/v1/auth/reauth", json={"credential": credential})
    assert replayed.status_code == 401
    assert (await client.delete(f"/v1/me/passkeys/{passkey['id']}")).status_code == 200
    neither = await client.post("/v1/auth/reauth", json={})
    assert neither.status_code == 400
    types = [e.type for e in await audit_of(client, user_id)]
    assert AuditType.STEP_UP in types


async def test_malformed_responses_get_a_clear_4xx_and_change_nothing(
    client_factory: ClientFactory,
) -> None:
    client, _, _ = await signed_in(client_factory, public_url=PUBLIC_URL)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    good_registration = authenticator.create((await client.post("/v1/me/passkeys/options")).json())
    garbage: list[Any] = [
        {},
        {"id": "x"},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {}},
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {"clientDataJSON": "!!"}},
        {
            **good_registration,
            "response": {**good_registration["response"], "clientDataJSON": "e30"},
        },
        {
            **good_registration,
            "response": {**good_registration["response"], "attestationObject": "oA"},
        },
        {
            **good_registration,
            "response": {**good_registration["response"], "clientDataJSON": "_w"},
        },
    ]
    for credential in garbage:
        registered = await client.post("/v1/me/passkeys", json={"credential": credential})
        assert registered.status_code == 400, (credential, registered.text)
        assert registered.json()["error"] == "invalid_passkey_registration"
        signed = await client.post("/v1/auth/passkey", json={"credential": credential})
        assert signed.status_code == 401, (credential, signed.text)
        assert signed.json()["error"] == "invalid_passkey"
    not_an_object = await client.post("/v1/auth/passkey", json={"credential": "text"})
    assert not_an_object.status_code == 422
    assert (await client.get("/v1/me/passkeys")).json()["passkeys"] == []


async def test_an_authenticator_naming_another_user_is_refused(
    client_factory: ClientFactory, db_settings: dict[str, Any]
) -> None:
    client, _, user_id = await signed_in(client_factory, **db_settings)
    authenticator = SoftwareAuthenticator(ORIGIN, RP_ID)
    await add_passkey(client, authenticator)
    # The passkey's key signs, but its user handle names someone else than its owner.
    authenticator.credentials[0].user_handle = b"00000000-0000-0000-0000-000000000000"
    credential = authenticator.get(await sign_in_options(client))
    refused = await client.post("/v1/auth/passkey", json={"credential": credential})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_passkey"
    reasons = [
        e.details.get("reason")
        for e in await audit_of(client, user_id)
        if e.type == AuditType.PASSKEY_FAILED
    ]
    assert reasons == ["user_handle"]
