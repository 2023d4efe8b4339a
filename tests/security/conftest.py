"""A ``watchword serve`` process for the black-box security tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realtime.conftest import Server, make_server

ROLE_SCOPES = {
    "user": ["profile", "sessions", "api-keys", "realtime", "channel:news"],
    "admin": ["admin", "realtime:publish", "realtime:presence"],
    "newsroom": ["channel:sports"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("security"), role_scopes=ROLE_SCOPES)
    srv.start()
    srv.create_user("admin@example.com", "admin")
    yield srv
    srv.stop()
