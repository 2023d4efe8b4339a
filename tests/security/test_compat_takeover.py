"""/api/v1 shares Watchword's users: it must not let one user change or delete another."""

from __future__ import annotations

import logging

import pytest

from tests.compat_v1.conftest import (  # noqa: F401 (the fixture)
    CompatFactory,
    compat_factory,
    cookie,
    login,
    make_user,
)
from tests.conftest import Client
from tests.helpers import PASSWORD
from watchword.services.context import CLI
from watchword.web.compat_v1.settings import CompatSettings

ROOT = "root@example.com"
PLAIN = "plain@example.com"


async def two_users(factory: CompatFactory, modes: str | None = None) -> tuple[Client, str, str]:
    client = await factory("session_db_auth", open_mode=modes)
    admin = await client.container.accounts.register(
        email=ROOT, password=PASSWORD, roles=["admin"], ctx=CLI, self_service=False
    )
    await make_user(client.container, PLAIN, PASSWORD)
    return client, admin.id, await login(client, PLAIN, PASSWORD)


async def test_a_plain_user_cannot_delete_or_change_an_admin(
    compat_factory: CompatFactory,  # noqa: F811
) -> None:
    client, admin_id, plain = await two_users(compat_factory)
    deleted = await client.delete(f"/api/v1/users/{admin_id}", headers=cookie(plain))
    assert deleted.status_code == 403 and deleted.json() == {"error": "Forbidden"}
    changed = await client.put(
        f"/api/v1/users/{admin_id}", json={"first_name": "pwned"}, headers=cookie(plain)
    )
    assert changed.status_code == 403 and changed.json() == {"error": "Forbidden"}
    admin = await client.container.accounts.get_user(admin_id)
    assert admin.first_name is None and not admin.disabled


async def test_an_admin_may_change_and_delete_another_user(
    compat_factory: CompatFactory,  # noqa: F811
) -> None:
    client, _, plain = await two_users(compat_factory)
    plain_id = (await client.get("/api/v1/users/me", headers=cookie(plain))).json()["id"]
    root = await login(client, ROOT, PASSWORD)
    changed = await client.put(
        f"/api/v1/users/{plain_id}", json={"first_name": "Ann"}, headers=cookie(root)
    )
    assert changed.status_code == 200 and changed.json()["first_name"] == "Ann"
    deleted = await client.delete(f"/api/v1/users/{plain_id}", headers=cookie(root))
    assert deleted.status_code == 200


async def test_exercise_mode_restores_the_any_user_rule_and_warns(
    compat_factory: CompatFactory,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="watchword.compat_v1"):
        client, admin_id, plain = await two_users(compat_factory, "exercise")
    assert any("TEACHING MODE" in r.getMessage() for r in caplog.records)
    deleted = await client.delete(f"/api/v1/users/{admin_id}", headers=cookie(plain))
    assert deleted.status_code == 200


def test_compat_modes_are_a_comma_separated_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, modes in (
        ("open", {"open"}),
        ("exercise", {"exercise"}),
        (" open , Exercise ", {"open", "exercise"}),
        ("", set()),
    ):
        monkeypatch.setenv("WATCHWORD_COMPAT_V1", value)
        assert CompatSettings().watchword_compat_v1 == modes
    monkeypatch.setenv("WATCHWORD_COMPAT_V1", "open,everything")
    with pytest.raises(ValueError, match="everything"):
        CompatSettings()
