"""A socket rests on its credential across the cluster: two ``watchword serve`` nodes on
PostgreSQL and Redis, an API key opens a socket on node two, and revoking that key on node one
closes the socket with 4003; a socket of another key of the same user stays open."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e]

WAIT = 10.0  # a bound for a loaded machine, never asserted as a duration


@pytest.fixture(scope="module")
def nodes(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, Node]]:
    workdir: Path = tmp_path_factory.mktemp("socket-cluster")
    env = cluster_env(workdir, postgres_url, redis_url, f"wwsock-{uuid.uuid4().hex[:8]}")
    cli(env, workdir, "db", "upgrade")
    one, two = Node("node1", env, workdir), Node("node2", env, workdir)
    try:
        one.spawn()
        two.spawn()
        one.wait_ready(within=90)
        two.wait_ready(within=90)
        yield one, two
    finally:
        one.stop()
        two.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def socket(node: Node, key: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{node.port}/v1/realtime",
        subprotocols=[websockets.Subprotocol("watchword.v1")],
        additional_headers={"X-API-Key": key},
        open_timeout=WAIT,
    )
    welcome = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert welcome["type"] == "welcome", welcome
    return ws


async def closed(ws: websockets.ClientConnection) -> tuple[int | None, str | None]:
    """Waits (bounded) for the server to close the socket, answering pings meanwhile."""
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
    return ws.close_code, ws.close_reason


async def test_a_key_revoked_on_one_node_closes_its_socket_on_another(
    nodes: tuple[Node, Node], http: httpx.AsyncClient
) -> None:
    one, two = nodes
    email = f"sock-{uuid.uuid4().hex[:10]}@example.com"
    made = await http.post(one.url + "/v1/users", json={"email": email, "password": PASSWORD})
    assert made.status_code == 201, made.text
    owner = Browser(http)
    assert (await owner.login(one, email)).status_code == 200
    keys = []
    for name in ("doomed", "kept"):
        created = await owner.request(
            "POST", one, "/v1/api-keys", json={"name": name, "scopes": ["realtime"]}
        )
        assert created.status_code == 201, created.text
        keys.append((str(created.json()["api_key"]["id"]), str(created.json()["key"])))
    (doomed_id, doomed_key), (_, kept_key) = keys
    doomed = await socket(two, doomed_key)
    kept = await socket(two, kept_key)
    try:
        revoked = await owner.request("DELETE", one, f"/v1/api-keys/{doomed_id}")
        assert revoked.status_code == 200, revoked.text
        assert await closed(doomed) == (4003, "session_revoked: api_key_revoked")
        # The other key's socket on the same node is untouched: it still answers a ping.
        await asyncio.wait_for(await kept.ping(), WAIT)
        assert kept.close_code is None
    finally:
        await doomed.close()
        await kept.close()
