"""CSRF, administration and the audit trail over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.domain.audit import AuditType
from watchword.services.context import CLI

# -- CSRF -------------------------------------------------------------------------------------


async def signed_in(client: Client) -> str:
    await client.register()
    return str((await client.login()).json()["csrf_token"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions/revoke-others", None),
        ("POST", "/v1/auth/logout", None),
        ("POST", "/v1/me/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("DELETE", "/v1/sessions/00000000-0000-0000-0000-000000000000", None),
    ],
)
async def test_cookie_requests_without_the_csrf_token_are_refused(
    client: Client, method: str, path: str, body: dict[str, str] | None
) -> None:
    await signed_in(client)
    del client.headers["X-CSRF-Token"]
    response = await client.request(method, path, json=body)
    assert response.status_code == 403
    assert response.json() == {
        "error": "csrf_failed",
        "message": "Missing or wrong X-CSRF-Token header.",
    }
    # Nothing happened: the session is alive and the password unchanged.
    assert (await client.get("/v1/me")).status_code == 200
    await client.login()


async def test_a_wrong_csrf_token_is_refused(client: Client) -> None:
    token = await signed_in(client)
    other = Client(transport=client._transport, base_url=str(client.base_url))
    other_token = (await other.login()).json()["csrf_token"]
    assert other_token != token
    for wrong in (other_token, token[:-1], token + "A", "", "x" * 500):
        response = await client.post("/v1/sessions/revoke-others", headers={"X-CSRF-Token": wrong})
        assert response.status_code == 403, wrong
        assert response.json()["error"] == "csrf_failed"
    assert (await other.get("/v1/me")).status_code == 200


async def test_a_foreign_origin_is_refused_even_with_the_token(client: Client) -> None:
    await signed_in(client)
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8001"):
        response = await client.post("/v1/sessions/revoke-others", headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert response.json() == {
            "error": "csrf_failed",
            "message": "The request's Origin is not allowed.",
        }


async def test_allowed_origins_pass(client_factory: ClientFactory) -> None:
    client = await client_factory(allowed_origins="https://app.example.com, https://b.example")
    await signed_in(client)
    for origin in ("https://app.example.com", "https://b.example", "http://127.0.0.1:8000"):
        response = await client.post("/v1/sessions/revoke-others", headers={"Origin": origin})
        assert response.status_code == 200, origin


async def test_safe_requests_need_no_csrf_token(client: Client) -> None:
    await signed_in(client)
    del client.headers["X-CSRF-Token"]
    for path in ("/v1/me", "/v1/sessions", "/v1/me/events"):
        response = await client.get(path, headers={"Origin": "https://evil.example"})
        assert response.status_code == 200, path


async def test_login_and_registration_refuse_a_foreign_origin(client: Client) -> None:
    register = await client.post(
        "/v1/users",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert register.status_code == 403 and register.json()["error"] == "csrf_failed"
    assert await client.container.db.users.count() == 0
    await client.register()
    login = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert login.status_code == 403 and "set-cookie" not in login.headers
    assert (
        await client.container.db.sessions.list_live(
            (await client.container.accounts.find_user("alice@example.com")).id,
            client.container.clock.now(),
        )
        == []
    )


# -- administration ---------------------------------------------------------------------------


async def admin_and_user(client: Client) -> tuple[Client, Client, dict[str, Any]]:
    """(admin's client, Bob's client, Bob's user)."""
    await client.container.accounts.register(
        email="root@example.com", password=PASSWORD, roles=["admin"], ctx=CLI, self_service=False
    )
    await client.login("root@example.com")
    bob_user = await client.register("bob@example.com")
    bob = Client(transport=client._transport, base_url=str(client.base_url))
    bob.container = client.container
    bob.headers["User-Agent"] = "bob-browser/1.0"
    await bob.login("bob@example.com")
    return client, bob, bob_user


async def test_admin_endpoints_need_the_admin_scope(client: Client) -> None:
    _, bob, bob_user = await admin_and_user(client)
    calls = [
        ("GET", "/v1/admin/users", None),
        ("PATCH", f"/v1/admin/users/{bob_user['id']}", {"disabled": True}),
        ("DELETE", f"/v1/admin/users/{bob_user['id']}/sessions", None),
    ]
    for method, path, body in calls:
        response = await bob.request(method, path, json=body)
        assert response.status_code == 403, path
        assert response.json() == {
            "error": "insufficient_scope",
            "message": "Missing scope: admin.",
        }
        # A cookie has nothing to retry with: no bearer challenge.
        assert "www-authenticate" not in response.headers
        stranger = Client(transport=client._transport, base_url=str(client.base_url))
        anonymous = await stranger.request(method, path, json=body)
        assert anonymous.status_code == 401, path
    assert (await bob.get("/v1/me")).status_code == 200


async def test_admin_lists_users_with_paging(client: Client) -> None:
    admin, _, bob_user = await admin_and_user(client)
    response = await admin.get("/v1/admin/users")
    assert response.status_code == 200
    users = response.json()["users"]
    assert {u["email"] for u in users} == {"root@example.com", "bob@example.com"}
    assert bob_user["id"] in {u["id"] for u in users}
    assert "password_hash" not in response.text and "argon2" not in response.text
    first = await admin.get("/v1/admin/users", params={"limit": 1})
    second = await admin.get("/v1/admin/users", params={"limit": 1, "offset": 1})
    paged = first.json()["users"] + second.json()["users"]
    assert [u["id"] for u in paged] == [u["id"] for u in users]
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        assert (await admin.get("/v1/admin/users", params=bad)).status_code == 422


async def test_disabling_a_user_revokes_all_their_sessions_at_once(client: Client) -> None:
    admin, bob, bob_user = await admin_and_user(client)
    phone = Client(transport=client._transport, base_url=str(client.base_url))
    await phone.login("bob@example.com")
    admin.headers["User-Agent"] = "admin-console/2.0"
    response = await admin.patch(f"/v1/admin/users/{bob_user['id']}", json={"disabled": True})
    assert response.status_code == 200
    assert response.json()["user"]["disabled"] is True
    assert response.json()["revoked_sessions"] == 2
    for device in (bob, phone):
        rejected = await device.get("/v1/me")
        assert rejected.status_code == 401
        assert rejected.json()["error"] in ("session_revoked", "account_disabled")
    login = await bob.post(
        "/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
    )
    assert login.status_code == 403 and login.json()["error"] == "account_disabled"
    events = await client.container.db.audit.for_user(bob_user["id"], limit=3)
    disabled = next(e for e in events if e.type == AuditType.USER_DISABLED)
    admin_id = (await admin.get("/v1/me")).json()["user"]["id"]
    assert disabled.actor_id == admin_id
    assert disabled.ip == "127.0.0.1" and disabled.user_agent == "admin-console/2.0"
    assert disabled.details["revoked"] == 2
    # Enabling lets Bob sign in again, but brings no old session back.
    enabled = await admin.patch(f"/v1/admin/users/{bob_user['id']}", json={"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["revoked_sessions"] == 0
    assert (await phone.get("/v1/me")).status_code == 401
    await bob.login("bob@example.com")


async def test_setting_roles_takes_effect_at_once(client: Client) -> None:
    admin, bob, bob_user = await admin_and_user(client)
    assert (await bob.get("/v1/admin/users")).status_code == 403
    response = await admin.patch(
        f"/v1/admin/users/{bob_user['id']}", json={"roles": ["admin", "admin", "ops"]}
    )
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["admin", "ops"]
    assert (await bob.get("/v1/admin/users")).status_code == 200
    events = await client.container.db.audit.for_user(bob_user["id"], limit=1)
    assert events[0].type == AuditType.USER_UPDATED and events[0].details["roles"] == [
        "admin",
        "ops",
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"roles": ["Not A Role"]}, 400, "invalid_request"),
        ({"roles": "admin"}, 422, "validation_error"),
        ({"disabled": "maybe"}, 422, "validation_error"),
        ({"disabled": True, "email": "x@example.com"}, 422, "validation_error"),
        ({"roles": ["r"] * 33}, 422, "validation_error"),
    ],
)
async def test_bad_admin_patches_change_nothing(
    client: Client, body: dict[str, Any], status: int, code: str
) -> None:
    admin, bob, bob_user = await admin_and_user(client)
    before = await client.container.db.users.get(bob_user["id"])
    response = await admin.patch(f"/v1/admin/users/{bob_user['id']}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert await client.container.db.users.get(bob_user["id"]) == before
    assert (await bob.get("/v1/me")).status_code == 200


async def test_admin_actions_on_unknown_users_are_404(client: Client) -> None:
    admin, _, _ = await admin_and_user(client)
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (
        await admin.patch(f"/v1/admin/users/{unknown}", json={"disabled": True})
    ).status_code == 404
    assert (await admin.delete(f"/v1/admin/users/{unknown}/sessions")).status_code == 404
    assert (
        await admin.patch(f"/v1/admin/users/{'x' * 65}", json={"disabled": True})
    ).status_code == 422


async def test_admin_signs_a_user_out_everywhere(client: Client) -> None:
    admin, bob, bob_user = await admin_and_user(client)
    response = await admin.delete(f"/v1/admin/users/{bob_user['id']}/sessions")
    assert response.status_code == 200
    assert len(response.json()["revoked_sessions"]) == 1
    assert (await bob.get("/v1/me")).json()["error"] == "session_revoked"
    assert (await admin.get("/v1/me")).status_code == 200
    events = await client.container.db.audit.for_user(bob_user["id"], limit=1)
    admin_id = (await admin.get("/v1/me")).json()["user"]["id"]
    assert events[0].type == AuditType.SESSIONS_REVOKED and events[0].actor_id == admin_id
    assert events[0].details["reason"] == "admin"
    # An admin action is audited even when there was nothing left to revoke.
    again = await admin.delete(f"/v1/admin/users/{bob_user['id']}/sessions")
    assert again.json()["revoked_sessions"] == []
    latest = await client.container.db.audit.for_user(bob_user["id"], limit=1)
    assert latest[0].id != events[0].id and latest[0].actor_id == admin_id


# -- my security events -----------------------------------------------------------------------


async def test_my_events_show_my_security_events_newest_first(client: Client) -> None:
    await client.register()
    await client.post("/v1/auth/login", json={"email": "alice@example.com", "password": "nope1234"})
    client.headers["User-Agent"] = "events-test/1.0"
    session_id = (await client.login()).json()["session"]["id"]
    await client.register("bob@example.com")  # someone else's events stay private
    response = await client.get("/v1/me/events")
    assert response.status_code == 200
    events = response.json()["events"]
    assert [e["type"] for e in events] == [
        AuditType.LOGIN_SUCCEEDED,
        AuditType.LOGIN_FAILED,
        AuditType.USER_REGISTERED,
    ]
    assert events[0]["session_id"] == session_id
    assert events[0]["ip"] == "127.0.0.1" and events[0]["user_agent"] == "events-test/1.0"
    page = await client.get("/v1/me/events", params={"limit": 1, "before": events[0]["id"]})
    assert [e["type"] for e in page.json()["events"]] == [AuditType.LOGIN_FAILED]
    for bad in ({"limit": 0}, {"limit": 501}, {"before": 0}, {"before": "x"}):
        assert (await client.get("/v1/me/events", params=bad)).status_code == 422
    assert PASSWORD not in response.text and "nope1234" not in response.text


async def test_disable_and_roles_in_one_patch_are_one_change(client: Client) -> None:
    admin, _, bob_user = await admin_and_user(client)
    response = await admin.patch(
        f"/v1/admin/users/{bob_user['id']}", json={"disabled": True, "roles": ["ops"]}
    )
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["ops"]
    assert response.json()["user"]["disabled"] is True
    assert response.json()["revoked_sessions"] == 1
    events = await client.container.db.audit.for_user(bob_user["id"], limit=2)
    assert events[0].type == AuditType.USER_DISABLED
    assert events[0].details == {"disabled": True, "revoked": 1, "roles": ["ops"]}
    assert events[1].type != AuditType.USER_UPDATED  # one row for one change
    refused = await admin.patch(
        f"/v1/admin/users/{bob_user['id']}", json={"disabled": False, "roles": ["Bad Role"]}
    )
    assert refused.status_code == 400
    stored = await client.container.db.users.get(bob_user["id"])
    assert stored is not None and stored.disabled and stored.roles == ("ops",)
