"""Two `watchword serve` processes on PostgreSQL and a real 3-master Redis Cluster behave as
one service, and the loss of one master fails closed for what lived there, then recovers."""

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

from tests.cluster.conftest import eventually
from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.helpers import PASSWORD
from tests.redis_cluster.servers import Master, RedisClusterServers
from watchword.domain.clock import sha256_hex

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e]


class Service:
    def __init__(self, nodes: list[Node], env: dict[str, str], workdir: Path) -> None:
        self.nodes = nodes
        self.env = env
        self.workdir = workdir
        self.prefix = env["WATCHWORD_REDIS_PREFIX"]

    async def create_user(self, http: httpx.AsyncClient) -> str:
        email = f"rc-user-{uuid.uuid4().hex[:12]}@example.com"
        created = await http.post(
            self.nodes[0].url + "/v1/users", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        return email


@pytest.fixture(scope="module")
def service(
    postgres_url: str,
    redis_cluster: RedisClusterServers,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("rc-nodes")
    env = cluster_env(
        workdir,
        postgres_url,
        redis_cluster.url,
        f"wwrc-{uuid.uuid4().hex[:8]}",
        login_rate_limit_account="3/minute",
    )
    cli(env, workdir, "db", "upgrade")
    nodes = [Node(f"rc-node{i}", env, workdir) for i in (1, 2)]
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        yield Service(nodes, env, workdir)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_a_session_works_on_both_nodes_and_a_revocation_on_one_ends_it_on_the_other(
    service: Service, http: httpx.AsyncClient
) -> None:
    one, two = service.nodes
    email = await service.create_user(http)
    laptop, phone = Browser(http), Browser(http)
    assert (await laptop.login(one, email)).status_code == 200
    assert (await phone.login(two, email)).status_code == 200
    for node in service.nodes:
        me = await laptop.request("GET", node, "/v1/me")
        assert me.status_code == 200 and me.json()["session"]["id"] == laptop.session_id
    revoked = await phone.request("DELETE", two, f"/v1/sessions/{laptop.session_id}")
    assert revoked.status_code == 200, revoked.text

    async def refused() -> bool:
        return (await laptop.request("GET", one, "/v1/me")).status_code == 401

    await eventually(refused)
    assert (await laptop.request("GET", one, "/v1/me")).json()["error"] == "session_revoked"
    assert (await phone.request("GET", one, "/v1/me")).status_code == 200


async def test_sockets_fan_out_and_presence_span_both_nodes(
    service: Service, http: httpx.AsyncClient
) -> None:
    one, two = service.nodes
    boss_email = await service.create_user(http)
    cli(service.env, service.workdir, "users", "set-roles", boss_email, "admin")
    boss = Browser(http)
    assert (await boss.login(one, boss_email)).status_code == 200
    email = await service.create_user(http)
    laptop, phone = Browser(http), Browser(http)
    assert (await laptop.login(one, email)).status_code == 200
    assert (await phone.login(two, email)).status_code == 200
    # A ticket issued on one node is redeemed on the other (shared, single use).
    ws_laptop = await _socket(two, await _ticket(laptop, one))
    ws_phone = await _socket(one, await _ticket(phone, two))
    try:
        user_id = (await laptop.request("GET", one, "/v1/me")).json()["user"]["id"]
        for node in service.nodes:
            listed = await boss.request(
                "GET", node, "/v1/realtime/presence", params={"user_id": user_id}
            )
            assert listed.status_code == 200, listed.text
            assert {c["session_id"] for c in listed.json()["connections"]} == {
                laptop.session_id,
                phone.session_id,
            }
        for n in range(3):
            sent = await boss.request(
                "POST",
                two,
                "/v1/realtime/publish",
                json={"user_id": user_id, "event": "order.updated", "data": {"n": n}},
            )
            assert sent.status_code == 202, sent.text
        for ws in (ws_laptop, ws_phone):
            got = [await _event(ws, "order.updated") for _ in range(3)]
            assert [e["data"]["n"] for e in got] == [0, 1, 2]
        # The phone, through node one, revokes the laptop: its socket on node two closes.
        revoked = await phone.request("DELETE", one, f"/v1/sessions/{laptop.session_id}")
        assert revoked.status_code == 200
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await _next(ws_laptop)
        assert ws_laptop.close_code == 4003
    finally:
        await ws_laptop.close()
        await ws_phone.close()


async def test_sign_in_budgets_are_counted_across_both_nodes(
    service: Service, http: httpx.AsyncClient
) -> None:
    one, two = service.nodes
    email = await service.create_user(http)
    bad = {"email": email, "password": "wrong password 123"}
    statuses = []
    for node in (one, two, one, two):
        statuses.append((await http.post(node.url + "/v1/auth/login", json=bad)).status_code)
    assert statuses == [401, 401, 401, 429]


async def test_cluster_check_reports_the_three_masters_and_their_slots(
    service: Service, redis_cluster: RedisClusterServers
) -> None:
    report = json.loads(cli(service.env, service.workdir, "cluster", "check", "--json"))
    assert report["ok"] is True
    state = report["dependencies"]["redis"]
    assert state["mode"] == "cluster" and state["slots_served"] == 16384
    assert sorted(m["node"] for m in state["masters"]) == sorted(
        f"127.0.0.1:{m.port}" for m in redis_cluster.masters
    )
    assert all(m["ok"] and m["slot_count"] > 0 for m in state["masters"])
    text = cli(service.env, service.workdir, "cluster", "check")
    assert "3 masters serve 16384 of 16384 slots" in text
    for master in redis_cluster.masters:
        assert f"127.0.0.1:{master.port}" in text


async def test_losing_a_master_fails_closed_where_its_keys_live_and_recovers(
    service: Service, http: httpx.AsyncClient, redis_cluster: RedisClusterServers
) -> None:
    one, two = service.nodes
    email = await service.create_user(http)
    # Sessions signed in on node one; node two has never seen them, so it must ask Redis.
    victim: tuple[Browser, Master] | None = None
    elsewhere: Browser | None = None
    for _ in range(30):
        browser = Browser(http)
        assert (await browser.login(one, email)).status_code == 200
        assert browser.cookie is not None
        pointer = f"{service.prefix}:secret:{{{sha256_hex(browser.cookie)}}}"
        entry = f"{service.prefix}:sess:{{{browser.session_id}}}"
        if victim is None:
            victim = (browser, redis_cluster.owner_of(pointer))
        elif victim[1] not in (redis_cluster.owner_of(pointer), redis_cluster.owner_of(entry)):
            elsewhere = browser
            break
    assert victim is not None and elsewhere is not None
    lost, master = victim
    master.kill()
    try:
        # Its session lives on the lost master: refused from the first request on, never
        # "authenticated by default".
        for _ in range(5):
            response = await lost.request("GET", two, "/v1/me")
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "service_unavailable"
        # Sessions whose keys live on the other masters keep working.
        kept = await elsewhere.request("GET", two, "/v1/me")
        assert kept.status_code == 200, kept.text
        # Exit status 1: a required dependency is down, and the report names the master.
        report = json.loads(cli_failing(service, "cluster", "check", "--json"))
        assert report["dependencies"]["redis"]["ok"] is False
        down = [m for m in report["dependencies"]["redis"]["masters"] if not m["ok"]]
        assert [m["node"] for m in down] == [f"127.0.0.1:{master.port}"]
    finally:
        if master.process is None:
            master.start()
        redis_cluster.wait_healthy()

    async def back() -> bool:
        return (await lost.request("GET", two, "/v1/me")).status_code == 200

    await eventually(back, attempts=400)
    assert (await elsewhere.request("GET", two, "/v1/me")).status_code == 200

    async def ready() -> bool:
        statuses = [(await http.get(node.url + "/readyz")).status_code for node in service.nodes]
        return statuses == [200, 200]

    await eventually(ready, attempts=400)


def cli_failing(service: Service, *args: str) -> str:
    import subprocess

    from tests.helpers import WATCHWORD

    result = subprocess.run(
        [WATCHWORD, *args],
        cwd=service.workdir,
        env=service.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr.decode()
    return result.stdout.decode()


async def _ticket(browser: Browser, node: Node) -> str:
    issued = await browser.request("POST", node, "/v1/realtime/ticket")
    assert issued.status_code == 201, issued.text
    return str(issued.json()["ticket"])


async def _socket(node: Node, ticket: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{node.port}/v1/realtime?ticket={ticket}",
        subprotocols=[websockets.Subprotocol("watchword.v1")],
        open_timeout=10,
    )
    welcome = await _next(ws)
    assert welcome["type"] == "welcome", welcome
    return ws


async def _next(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message


async def _event(ws: websockets.ClientConnection, name: str) -> dict[str, Any]:
    while True:
        message = await _next(ws)
        if message.get("type") == "event" and message.get("event") == name:
            return message
