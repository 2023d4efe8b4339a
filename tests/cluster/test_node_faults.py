"""Redis stopped under two running nodes (a private redis-server): sockets and recovery."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.cluster.conftest import PrivateRedis, eventually
from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.cluster.test_nodes import _next, _socket
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(
    postgres_url: str, redis_server: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Node], dict[str, str], Path]]:
    workdir = tmp_path_factory.mktemp("pair")
    env = cluster_env(workdir, postgres_url, redis_server.url, "faultpair")
    cli(env, workdir, "db", "upgrade")
    nodes = [Node(f"node{i}", env, workdir) for i in (1, 2)]
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        yield nodes, env, workdir
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _true(value: bool) -> bool:
    return value


async def test_a_socket_revoked_while_redis_is_down_is_closed_and_the_nodes_recover(
    pair: tuple[list[Node], dict[str, str], Path],
    redis_server: PrivateRedis,
    http: httpx.AsyncClient,
) -> None:
    (one, two), env, workdir = pair
    email = f"fault-{uuid.uuid4().hex[:12]}@example.com"
    created = await http.post(one.url + "/v1/users", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201
    laptop = Browser(http)
    assert (await laptop.login(one, email)).status_code == 200
    ticket = (await laptop.request("POST", one, "/v1/realtime/ticket")).json()["ticket"]
    ws = await _socket(two, ticket)
    try:

        async def listed() -> bool:
            found = await laptop.request("GET", one, "/v1/realtime/presence")
            return len(found.json()["connections"]) == 1

        await eventually(listed)  # admitted on node two, seen cluster-wide
        redis_server.stop()

        async def unready(node: Node) -> bool:
            return (await http.get(node.url + "/readyz")).status_code == 503

        await eventually(lambda: unready(one))
        await eventually(lambda: unready(two))
        # Fail closed on both nodes: no cookie check, no sign-in without Redis.
        for node in (one, two):
            me = await laptop.request("GET", node, "/v1/me")
            assert me.status_code == 503 and me.json()["error"] == "service_unavailable"
        refused = await http.post(
            one.url + "/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert refused.status_code == 503
        # The operator revokes the laptop from the command line while Redis is down: the
        # database and the control feed take it; the socket on node two is closed.
        assert laptop.session_id is not None
        cli(env, workdir, "sessions", "revoke", laptop.session_id)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await _next(ws)
        assert ws.close_code == 4003

        redis_server.start()

        async def ready(node: Node) -> bool:
            return (await http.get(node.url + "/readyz")).status_code == 200

        await eventually(lambda: ready(one), attempts=300)
        await eventually(lambda: ready(two), attempts=300)
        for node in (one, two):
            me = await laptop.request("GET", node, "/v1/me")
            assert me.status_code == 401 and me.json()["error"] == "session_revoked"
        phone = Browser(http)
        assert (await phone.login(two, email)).status_code == 200
        assert (await phone.request("GET", one, "/v1/me")).status_code == 200
    finally:
        await ws.close()
