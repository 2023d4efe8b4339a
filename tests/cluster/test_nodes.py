"""Three `watchword serve` processes on the real PostgreSQL and Redis behave as one service."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.cluster.conftest import eventually
from tests.cluster.nodes import Browser, Node, cli, cluster_env
from tests.conftest import service_unavailable
from tests.helpers import PASSWORD, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e]

SESSION_LIMIT = 3


class Cluster:
    def __init__(self, nodes: list[Node], env: dict[str, str], workdir: Path) -> None:
        self.nodes = nodes
        self.env = env
        self.workdir = workdir

    async def create_user(self, http: httpx.AsyncClient) -> str:
        email = f"node-user-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD}
        created = await http.post(self.nodes[0].url + "/v1/users", json=body)
        assert created.status_code == 201, created.text
        return email


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    env = cluster_env(
        workdir,
        postgres_url,
        redis_url,
        f"wwnodes-{uuid.uuid4().hex[:8]}",
        max_sessions_per_user=str(SESSION_LIMIT),
        session_limit_policy="reject",
    )
    cli(env, workdir, "db", "upgrade")
    nodes = [Node(f"node{i}", env, workdir) for i in (1, 2, 3)]
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        yield Cluster(nodes, env, workdir)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_a_session_from_node_one_works_everywhere_and_a_revocation_on_three_ends_it(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    one, two, three = cluster.nodes
    email = await cluster.create_user(http)
    laptop, phone = Browser(http), Browser(http)
    assert (await laptop.login(one, email)).status_code == 200
    assert (await phone.login(three, email)).status_code == 200
    for node in cluster.nodes:
        me = await laptop.request("GET", node, "/v1/me")
        assert me.status_code == 200 and me.json()["session"]["id"] == laptop.session_id
    # The phone, on node three, signs the laptop out.
    revoked = await phone.request("DELETE", three, f"/v1/sessions/{laptop.session_id}")
    assert revoked.status_code == 200, revoked.text
    for node in (one, two):

        async def refused(node: Node = node) -> bool:
            response = await laptop.request("GET", node, "/v1/me")
            return response.status_code == 401

        await eventually(refused)
        body = (await laptop.request("GET", node, "/v1/me")).json()
        assert body["error"] == "session_revoked"
    # The phone is untouched on every node.
    for node in cluster.nodes:
        assert (await phone.request("GET", node, "/v1/me")).status_code == 200


async def test_a_revocation_from_the_command_line_reaches_every_running_node(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    email = await cluster.create_user(http)
    browser = Browser(http)
    assert (await browser.login(cluster.nodes[1], email)).status_code == 200
    for node in cluster.nodes:
        assert (await browser.request("GET", node, "/v1/me")).status_code == 200
    assert browser.session_id is not None
    cli(cluster.env, cluster.workdir, "sessions", "revoke", browser.session_id)
    for node in cluster.nodes:

        async def refused(node: Node = node) -> bool:
            return (await browser.request("GET", node, "/v1/me")).status_code == 401

        await eventually(refused)


async def test_the_session_limit_holds_under_concurrent_logins_on_all_three_nodes(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    email = await cluster.create_user(http)
    browsers = [Browser(http) for _ in range(12)]
    results = await asyncio.gather(
        *(b.login(cluster.nodes[i % 3], email) for i, b in enumerate(browsers))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * SESSION_LIMIT + [409] * (12 - SESSION_LIMIT)
    winners = [b for b, r in zip(browsers, results, strict=True) if r.status_code == 200]
    listed = await winners[0].request("GET", cluster.nodes[2], "/v1/sessions")
    assert listed.status_code == 200
    assert sorted(s["id"] for s in listed.json()["sessions"]) == sorted(
        str(b.session_id) for b in winners
    )


async def test_cluster_check_and_verbose_readiness_show_every_node(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    ready = await http.get(cluster.nodes[0].url + "/readyz", params={"verbose": 1})
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"]["redis"]["ok"] and body["checks"]["bus"]["ok"]

    async def three_alive() -> bool:
        view = (await http.get(cluster.nodes[0].url + "/readyz", params={"verbose": 1})).json()
        return sum(1 for n in view["cluster"]["nodes"] if n["alive"]) >= 3

    await eventually(three_alive, attempts=150, interval=0.1)
    report = json.loads(cli(cluster.env, cluster.workdir, "cluster", "check", "--json"))
    assert report["ok"] is True
    assert report["dependencies"]["database"]["ok"] and report["dependencies"]["redis"]["ok"]
    assert report["dependencies"]["agreement"]["ok"]
    assert report["dependencies"]["agreement"]["issuer"] == "http://127.0.0.1:8080"
    alive = [n for n in report["nodes"] if n["alive"] and n["bus"]]
    assert len(alive) >= 3


async def _healthz_on(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), timeout=10)
    return head


async def test_an_idle_keep_alive_connection_outlasts_a_client_pools_own_expiry(
    cluster: Cluster,
) -> None:
    # A pooled connection must be dropped by its holder (httpx after 5 s, nginx upstream
    # after 60 s), never by the server first: a request written as the server closes the
    # connection is lost (httpx.ReadError, or a 502 from nginx).
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.nodes[0].port)
    try:
        assert (await _healthz_on(writer, reader)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(6)
        assert (await _healthz_on(writer, reader)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_a_refresh_race_across_nodes_has_exactly_one_winner(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    email = await cluster.create_user(http)
    signin = await http.post(
        cluster.nodes[0].url + "/v1/auth/login",
        json={"email": email, "password": PASSWORD, "mode": "token"},
    )
    assert signin.status_code == 200, signin.text
    first = signin.json()
    body = {"refresh_token": first["refresh_token"]}
    answers = await asyncio.gather(
        *(http.post(cluster.nodes[i % 3].url + "/v1/auth/refresh", json=body) for i in range(9))
    )
    assert [a.status_code for a in answers] == [200] * 9, [a.text for a in answers]
    # One rotation: every racer (inside the grace window) got the very same new pair.
    assert len({a.json()["refresh_token"] for a in answers}) == 1
    assert len({a.json()["access_token"] for a in answers}) == 1
    new_pair = answers[0].json()
    assert new_pair["refresh_token"] != first["refresh_token"]
    for node in cluster.nodes:
        me = await http.get(
            node.url + "/v1/me", headers={"Authorization": f"Bearer {new_pair['access_token']}"}
        )
        assert me.status_code == 200, me.text
        assert me.json()["session"] is None or me.json()["session"]["id"] == first["session_id"]
    # The winner's refresh token rotates once more, on any node.
    again = await http.post(
        cluster.nodes[2].url + "/v1/auth/refresh",
        json={"refresh_token": new_pair["refresh_token"]},
    )
    assert again.status_code == 200 and again.json()["refresh_token"] != new_pair["refresh_token"]


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


async def test_realtime_fans_out_across_nodes_and_a_revocation_closes_a_socket_elsewhere(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    one, two, three = cluster.nodes
    boss_email = await cluster.create_user(http)
    cli(cluster.env, cluster.workdir, "users", "set-roles", boss_email, "admin")
    boss = Browser(http)
    assert (await boss.login(one, boss_email)).status_code == 200
    email = await cluster.create_user(http)
    laptop, phone = Browser(http), Browser(http)
    assert (await laptop.login(one, email)).status_code == 200
    assert (await phone.login(one, email)).status_code == 200
    # Tickets issued on node one are redeemed on nodes two and three (shared, single use).
    ticket = (await laptop.request("POST", one, "/v1/realtime/ticket")).json()["ticket"]
    ws_laptop = await _socket(two, ticket)
    ws_phone = await _socket(
        three, (await phone.request("POST", one, "/v1/realtime/ticket")).json()["ticket"]
    )
    # A ticket works once across the cluster: the reuse is refused (close 4002).
    with pytest.raises(websockets.ConnectionClosed) as reused:
        await _socket(three, ticket)
    assert reused.value.rcvd is not None and reused.value.rcvd.code == 4002
    try:
        user_id = (await laptop.request("GET", one, "/v1/me")).json()["user"]["id"]
        # Presence is cluster-wide: node one sees the sockets held by two and three.
        listed = await boss.request(
            "GET", one, "/v1/realtime/presence", params={"user_id": user_id}
        )
        assert listed.status_code == 200
        assert {c["session_id"] for c in listed.json()["connections"]} == {
            laptop.session_id,
            phone.session_id,
        }
        for n in range(3):
            sent = await boss.request(
                "POST",
                one,
                "/v1/realtime/publish",
                json={"user_id": user_id, "event": "order.updated", "data": {"n": n}},
            )
            assert sent.status_code == 202, sent.text
        for ws in (ws_laptop, ws_phone):
            got = [await _event(ws, "order.updated") for _ in range(3)]
            assert [e["data"]["n"] for e in got] == [0, 1, 2]
        # The phone, through node three, revokes the laptop: its socket on node two closes.
        revoked = await phone.request("DELETE", three, f"/v1/sessions/{laptop.session_id}")
        assert revoked.status_code == 200
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await _next(ws_laptop)
        assert ws_laptop.close_code == 4003
        # The phone's socket is untouched.
        await boss.request(
            "POST",
            one,
            "/v1/realtime/publish",
            json={"user_id": user_id, "event": "still.here", "data": None},
        )
        assert (await _event(ws_phone, "still.here"))["data"] is None
    finally:
        await ws_laptop.close()
        await ws_phone.close()


DEPLOY_NGINX = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def nginx_config(ports: list[int], listen: int, workdir: Path) -> str:
    """deploy/nginx.conf for these nodes, on plain HTTP on loopback."""
    text = DEPLOY_NGINX.read_text()
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{listen};")
    text = "\n".join(line for line in text.splitlines() if "ssl_certificate" not in line)
    for n, port in enumerate(ports, start=1):
        text = text.replace(f"server 10.0.0.1{n}:8000", f"server 127.0.0.1:{port}")
    temp = " ".join(
        f"{kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return text.replace(
        "http {", f"http {{\n    {temp} uwsgi_temp_path {workdir}/u; scgi_temp_path {workdir}/s;", 1
    )


async def test_three_nodes_behind_the_shipped_nginx_config_need_no_sticky_sessions(
    cluster: Cluster, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        service_unavailable("nginx", "not installed (scripts/test-deps installs it)")
    tmp_path.chmod(0o777)
    listen = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config([n.port for n in cluster.nodes], listen, tmp_path))
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(tmp_path),
            "-c",
            str(conf),
            "-e",
            str(tmp_path / "error.log"),
            "-g",
            f"pid {tmp_path}/nginx.pid; daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lb = Node("nginx", cluster.env, tmp_path)
    lb.port = listen
    try:

        async def answering() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return (await http.get(lb.url + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answering)
        seen = set()
        for _ in range(9):
            view = (await http.get(lb.url + "/readyz", params={"verbose": 1})).json()
            seen.add(view["cluster"]["node"]["id"])
        assert len(seen) == 3  # round robin over every node
        email = await cluster.create_user(http)
        browser, other = Browser(http), Browser(http)
        assert (await browser.login(lb, email)).status_code == 200
        assert (await other.login(lb, email)).status_code == 200
        for _ in range(6):
            assert (await browser.request("GET", lb, "/v1/me")).status_code == 200
        revoked = await other.request("DELETE", lb, f"/v1/sessions/{browser.session_id}")
        assert revoked.status_code == 200

        async def refused_everywhere() -> bool:
            answers = [await browser.request("GET", lb, "/v1/me") for _ in range(3)]
            return all(a.status_code == 401 for a in answers)

        await eventually(refused_everywhere)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_a_node_killed_under_load_loses_no_acknowledged_session(
    cluster: Cluster, http: httpx.AsyncClient, postgres_url: str
) -> None:
    one, two, three = cluster.nodes
    survivor = Browser(http)
    assert (await survivor.login(two, await cluster.create_user(http))).status_code == 200
    emails = []
    for _ in range(LOAD_USERS):
        email = f"load-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD}
        created = await http.post(one.url + "/v1/users", json=body)
        assert created.status_code == 201, created.text
        emails.append(email)
    acknowledged: list[tuple[str, Browser]] = []
    other_answers: list[httpx.Response] = []
    in_flight: set[int] = set()
    cut_off: list[BaseException] = []  # started before the kill, no answer after it
    refused_after: list[BaseException] = []  # started after the kill
    killed = False
    started = 0

    async def sign_in(email: str) -> None:
        nonlocal started
        for _ in range(SESSION_LIMIT):
            browser = Browser(http)
            started += 1
            ticket, before_kill = started, not killed
            in_flight.add(ticket)
            try:
                response = await browser.login(two, email)
            except httpx.TransportError as exc:
                (cut_off if before_kill else refused_after).append(exc)
                return
            finally:
                in_flight.discard(ticket)
            if response.status_code == 200:
                acknowledged.append((email, browser))
            else:
                other_answers.append(response)

    tasks = [asyncio.create_task(sign_in(e)) for e in emails]
    # Kill only while sign-ins are on the wire: some acknowledged, several still unanswered.
    await eventually(lambda: _true(len(acknowledged) >= 3 and len(in_flight) >= 3), attempts=1200)
    # Nothing runs on the loop between this count and the kill (both are synchronous).
    in_flight_at_kill = len(in_flight)
    killed = True
    two.kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    try:
        assert in_flight_at_kill >= 3
        # The kill landed mid-request: sign-ins sent before it never got their answer.
        assert cut_off, "every sign-in sent before the kill was answered: it landed too late"
        assert len(cut_off) <= in_flight_at_kill
        # The node answered nothing but success until it died (no 409, no 5xx).
        assert other_answers == [], [(r.status_code, r.text) for r in other_answers]
        assert len(acknowledged) + len(cut_off) + len(refused_after) <= LOAD_USERS * SESSION_LIMIT
        # Every acknowledged session is in PostgreSQL itself, live, for the right user.
        rows = await _sessions_in_postgres(postgres_url, emails)
        for email, browser in acknowledged:
            assert browser.session_id in rows, f"acknowledged session {browser.session_id} lost"
            row = rows[browser.session_id]
            assert row["email"] == email and row["revoked_at"] is None, dict(row)
            assert row["expires_at"] > datetime.now(UTC)
        # Beyond those, only sign-ins cut off by the kill may have left a session behind.
        assert len(rows) - len(acknowledged) <= len(cut_off)
        # Every session node two acknowledged works on the others, with the same cookie.
        for _, browser in [("", survivor), *acknowledged]:
            for node in (one, three):
                response = await browser.request("GET", node, "/v1/me")
                assert response.status_code == 200, response.text
                assert response.json()["session"]["id"] == browser.session_id
    finally:
        two.spawn()
        two.wait_ready()
    # Back in the cluster, the restarted node serves them too.
    assert (await survivor.request("GET", two, "/v1/me")).status_code == 200


LOAD_USERS = 10


async def _sessions_in_postgres(postgres_url: str, emails: list[str]) -> dict[str, Any]:
    """The live sessions of these users, read with asyncpg straight from the database."""
    import asyncpg

    conn = await asyncpg.connect(
        postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10
    )
    try:
        rows = await conn.fetch(
            "SELECT s.id, u.email, s.revoked_at, s.expires_at FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE u.email = ANY($1::text[])",
            emails,
        )
    finally:
        await conn.close()
    return {row["id"]: row for row in rows}


async def _true(value: bool) -> bool:
    return value
