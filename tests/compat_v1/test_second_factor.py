"""The legacy /api/v1 surface has no challenge step: an account with a second factor cannot be
opened there with its password alone."""

from __future__ import annotations

from tests.compat_v1.conftest import CompatFactory, basic, make_user
from tests.helpers import ManualClock
from watchword.domain.mfa import TotpFactor


async def test_a_password_alone_does_not_open_an_account_with_totp(
    compat_factory: CompatFactory, clock: ManualClock
) -> None:
    client = await compat_factory("basic_auth")
    email, password = "bob@hbtn.io", "H0lberton School 98!"
    bob = await make_user(client.container, email, password)
    assert (await client.get("/api/v1/users/me", headers=basic(email, password))).status_code == 200
    mfa = client.container.account_stores.mfa
    assert await mfa.put_pending(TotpFactor(bob.id, "sealed", clock.now()))
    assert await mfa.confirm(bob.id, 1, [], clock.now())
    assert (await client.get("/api/v1/users/me", headers=basic(email, password))).status_code == 403

    session = await compat_factory("session_auth")
    response = await session.post(
        "/api/v1/auth_session/login", data={"email": email, "password": password}
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers
    events = await client.container.db.audit.for_user(bob.id)
    assert "mfa_required" in [e.details.get("reason") for e in events]


async def test_a_password_alone_does_not_open_an_account_with_a_passkey(
    compat_factory: CompatFactory, clock: ManualClock
) -> None:
    from dataclasses import replace

    from tests.stores.test_passkey_store import passkey

    client = await compat_factory("basic_auth")
    email, password = "carol@hbtn.io", "H0lberton School 98!"
    carol = await make_user(client.container, email, password)
    assert (await client.get("/api/v1/users/me", headers=basic(email, password))).status_code == 200
    stored = replace(passkey(carol), created_at=clock.now())
    assert await client.container.account_stores.passkeys.add(stored)
    assert (await client.get("/api/v1/users/me", headers=basic(email, password))).status_code == 403
