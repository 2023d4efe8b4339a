"""Sockets through the shipped deploy/nginx.conf in front of two nodes: a revocation made on
the node that does not hold the socket closes it (4003), for a ticket and a bearer token."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.cluster.conftest import eventually
from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.cluster.test_nodes import nginx_config
from tests.conftest import service_unavailable
from tests.helpers import PASSWORD, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e]


class Proxied:
    def __init__(self, nodes: list[Node], lb: Node, node_ids: dict[str, Node]) -> None:
        self.nodes = nodes
        self.lb = lb
        self.node_ids = node_ids  # cluster node id -> the process behind it


@pytest.fixture(scope="module")
def proxied(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        service_unavailable("nginx", "not installed (scripts/test-deps installs it)")
    workdir = tmp_path_factory.mktemp("proxied")
    workdir.chmod(0o777)
    env = cluster_env(workdir, postgres_url, redis_url, f"wwproxied-{uuid.uuid4().hex[:8]}")
    cli(env, workdir, "db", "upgrade")
    nodes = [Node(f"node{i}", env, workdir) for i in (1, 2)]
    listen = free_port()
    conf = workdir / "nginx.conf"
    text = nginx_config([n.port for n in nodes], listen, workdir)
    # Two nodes: the shipped upstream's third server has no process behind it here.
    text = "\n".join(line for line in text.splitlines() if "server 10.0.0." not in line)
    conf.write_text(text)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        nginx = subprocess.Popen(
            [
                binary,
                "-p",
                str(workdir),
                "-c",
                str(conf),
                "-e",
                str(workdir / "error.log"),
                "-g",
                f"pid {workdir}/nginx.pid; daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lb = Node("nginx", env, workdir)
        lb.port = listen
        node_ids: dict[str, Node] = {}
        for node in nodes:
            view = httpx.get(node.url + "/readyz", params={"verbose": 1}, timeout=30)
            node_ids[view.json()["cluster"]["node"]["id"]] = node
        for _ in range(600):
            assert nginx.poll() is None, (workdir / "error.log").read_text()
            try:
                if httpx.get(lb.url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("nginx never answered /healthz")
        yield Proxied(nodes, lb, node_ids)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        for node in nodes:
            node.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _next(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message


async def _open(
    lb: Node, *, query: str = "", subprotocols: tuple[str, ...] = ()
) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{lb.port}/v1/realtime{query}",
        subprotocols=[websockets.Subprotocol(p) for p in ("watchword.v1", *subprotocols)],
        open_timeout=30,
    )
    welcome = await _next(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def _other(proxied: Proxied, welcome: dict[str, Any]) -> Node:
    """The node that does not hold the socket (the welcome names the one that does)."""
    holder = proxied.node_ids[welcome["node"]]
    (other,) = [n for n in proxied.nodes if n is not holder]
    return other


async def _closed_with(ws: websockets.ClientConnection, within: float = 60.0) -> int | None:
    """The close code, waiting at most ``within`` seconds (pings keep an open socket busy)."""

    async def drain() -> None:
        while True:
            await _next(ws)

    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(drain(), within)
    return ws.close_code


async def _create_user(proxied: Proxied, http: httpx.AsyncClient) -> str:
    email = f"proxied-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD}
    created = await http.post(proxied.lb.url + "/v1/users", json=body)
    assert created.status_code == 201, created.text
    return email


async def test_a_ticket_socket_behind_nginx_is_closed_by_a_logout_on_the_other_node(
    proxied: Proxied, http: httpx.AsyncClient
) -> None:
    email = await _create_user(proxied, http)
    laptop, phone = Browser(http), Browser(http)
    assert (await laptop.login(proxied.lb, email)).status_code == 200
    assert (await phone.login(proxied.lb, email)).status_code == 200
    issued = await laptop.request("POST", proxied.lb, "/v1/realtime/ticket")
    assert issued.status_code in (200, 201), issued.text
    ws, welcome = await _open(proxied.lb, query=f"?ticket={issued.json()['ticket']}")
    ws_phone, welcome_phone = await _open(
        proxied.lb,
        query="?ticket="
        + (await phone.request("POST", proxied.lb, "/v1/realtime/ticket")).json()["ticket"],
    )
    try:
        assert welcome["session_id"] == laptop.session_id
        other = _other(proxied, welcome)
        out = await laptop.request("POST", other, "/v1/auth/logout")
        assert out.status_code in (200, 204), out.text
        assert await _closed_with(ws) == 4003
        # The other session's socket stays open: the close was for the revoked one alone.
        await ws_phone.send(json.dumps({"type": "ping"}))
        assert ws_phone.close_code is None
        assert welcome_phone["session_id"] == phone.session_id
    finally:
        await ws.close()
        await ws_phone.close()


async def test_a_bearer_socket_behind_nginx_is_closed_by_a_session_delete_on_the_other_node(
    proxied: Proxied, http: httpx.AsyncClient
) -> None:
    email = await _create_user(proxied, http)
    signin = await http.post(
        proxied.lb.url + "/v1/auth/login",
        json={"email": email, "password": PASSWORD, "mode": "token"},
    )
    assert signin.status_code == 200, signin.text
    pair = signin.json()
    phone = Browser(http)
    assert (await phone.login(proxied.lb, email)).status_code == 200
    ws, welcome = await _open(proxied.lb, subprotocols=(f"bearer.{pair['access_token']}",))
    try:
        assert welcome["session_id"] == pair["session_id"]
        other = _other(proxied, welcome)
        revoked = await phone.request("DELETE", other, f"/v1/sessions/{pair['session_id']}")
        assert revoked.status_code == 200, revoked.text
        assert await _closed_with(ws) == 4003

        async def refused() -> bool:
            me = await http.get(
                proxied.lb.url + "/v1/me",
                headers={"Authorization": f"Bearer {pair['access_token']}"},
            )
            return me.status_code == 401

        await eventually(refused, attempts=300, interval=0.1)
    finally:
        await ws.close()
