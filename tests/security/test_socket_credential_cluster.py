"""A socket rests on its credential across the cluster: two ``watchword serve`` nodes on
PostgreSQL and Redis, an API key opens a socket on node two, and revoking that key on node one
closes the socket with 4003; a socket of another key of the same user stays open."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.helpers import PASSWORD
from watchword.sdk import SSERevocationSource, TokenRevoked, Verifier

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


async def test_a_user_disabled_on_one_node_reaches_a_verifier_following_another(
    nodes: tuple[Node, Node], http: httpx.AsyncClient
) -> None:
    one, two = nodes
    admin_email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    cli(one.env, one.workdir, "users", "create", "--email", admin_email, "--password-stdin",
        "--role", "admin", stdin=PASSWORD + "\n")  # fmt: skip
    boss = Browser(http)
    assert (await boss.login(one, admin_email)).status_code == 200
    made = await boss.request(
        "POST", one, "/v1/api-keys", json={"name": "feed", "scopes": ["revocations:read"]}
    )
    assert made.status_code == 201, made.text
    users = []
    for _ in range(2):
        email = f"feed-{uuid.uuid4().hex[:10]}@example.com"
        created = await http.post(
            one.url + "/v1/users", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        login = await http.post(
            one.url + "/v1/auth/login", json={"email": email, "password": PASSWORD, "mode": "token"}
        )
        assert login.status_code == 200, login.text
        users.append((str(created.json()["user"]["id"]), str(login.json()["access_token"])))
    (doomed_id, doomed), (kept_id, kept) = users
    source = SSERevocationSource(f"{two.url}/v1/revocations/stream", made.json()["key"])
    async with Verifier(
        issuer=one.env["WATCHWORD_PUBLIC_URL"],
        jwks_url=f"{two.url}/.well-known/jwks.json",
        revocations=source,
        feed_wait=WAIT,
    ) as verifier:
        assert await verifier.await_feed(WAIT)
        assert (await verifier.averify(doomed)).subject == doomed_id
        changed = await boss.request(
            "PATCH", one, f"/v1/admin/users/{doomed_id}", json={"disabled": True}
        )
        assert changed.status_code == 200, changed.text
        for _ in range(int(WAIT / 0.02)):
            try:
                await verifier.averify(doomed)
            except TokenRevoked:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("node one's change never reached the verifier on node two")
        assert (await verifier.averify(kept)).subject == kept_id
    # Node two's feed names the disabled user itself, not only the sessions it ended.
    assert doomed_id in (await snapshot(http, two, made.json()["key"])).get("users", {})


async def snapshot(http: httpx.AsyncClient, node: Node, key: str) -> dict[str, Any]:
    """The first frame of a fresh feed connection to ``node``, read off the wire."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    url = f"{node.url}/v1/revocations/stream"
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        event, data = None, ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data += line.partition(":")[2].strip()
            elif not line and event is not None:
                assert event == "snapshot", event
                frame: dict[str, Any] = json.loads(data)
                return frame
    raise AssertionError("the feed closed before its snapshot")
