"""A revocation and its audit line are one write: if the audit line cannot be written, the
session is not revoked either (and the caller is told), so the trail never misses one."""

from __future__ import annotations

import pytest

from tests.conftest import ClientFactory
from watchword.services.context import CLI
from watchword.stores.sql import database as sql_database


async def test_a_failed_audit_write_leaves_the_session_live(
    client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await client_factory()
    await client.register()
    session_id = (await client.login()).json()["session"]["id"]

    async def audit_down(conn: object, audit: object) -> None:
        raise RuntimeError("the audit table refused the row")

    monkeypatch.setattr(sql_database, "insert_audit", audit_down)
    with pytest.raises(RuntimeError):
        await client.container.sessions.revoke(session_id, "logout", CLI)
    monkeypatch.undo()
    session = await client.container.db.sessions.get(session_id)
    assert session is not None and session.revoked_at is None
    assert (await client.get("/v1/me")).status_code == 200


async def test_a_logout_writes_its_audit_line(client_factory: ClientFactory) -> None:
    client = await client_factory()
    await client.register()
    session_id = (await client.login()).json()["session"]["id"]
    assert (await client.post("/v1/auth/logout")).status_code == 200
    events = await client.container.db.audit.tail(limit=1)
    assert events[0].type == "logout" and events[0].session_id == session_id
