"""A real Redis Cluster of three masters on loopback, from redis-server and redis-cli.

Each master runs in its own directory (its ``nodes.conf`` survives a kill, so a restarted
master rejoins with its slots). ``cluster-require-full-coverage no`` is what the operations
guide asks for: with a master gone, keys of the other masters keep answering.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import service_unavailable

NODE_TIMEOUT_MS = 1000


def _port_pair() -> int:
    """A port that is free together with its cluster bus port (port + 10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus, contextlib.suppress(OSError):
            bus.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_unavailable(name, "not installed (scripts/test-deps installs it)")
        raise AssertionError("unreachable")
    return path


class Master:
    def __init__(self, workdir: Path) -> None:
        self.port = _port_pair()
        self.dir = workdir / f"node-{self.port}"
        self.dir.mkdir(parents=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                _binary("redis-server"),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class RedisClusterServers:
    """Three masters, slots split evenly by ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path) -> None:
        self.masters = [Master(workdir) for _ in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in self.masters)

    def start(self) -> None:
        for master in self.masters:
            master.start()
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster", "create",
                *(f"127.0.0.1:{m.port}" for m in self.masters),
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        self.wait_healthy()

    def wait_healthy(self, within: float = 30.0) -> None:
        """Until every master says the cluster is ok and all 16384 slots are served."""
        deadline = time.monotonic() + within
        while True:
            try:
                states = []
                for master in self.masters:
                    with redis.Redis(port=master.port, socket_timeout=0.5) as client:
                        info = client.execute_command("CLUSTER INFO")
                    states.append(
                        str(info.get("cluster_state")) == "ok"
                        and str(info.get("cluster_slots_ok")) == "16384"
                    )
                if all(states):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the Redis Cluster did not become healthy")
            time.sleep(0.1)

    def owner_of(self, key: str) -> Master:
        """The master serving ``key``'s slot."""
        with redis.Redis(port=self.masters[0].port, socket_timeout=1) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            shards = client.execute_command("CLUSTER SLOTS")
        for start, end, primary, *_ in shards:
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(m for m in self.masters if m.port == port)
        raise AssertionError(f"slot {slot} is not served")

    def stop(self) -> None:
        for master in self.masters:
            master.kill()
