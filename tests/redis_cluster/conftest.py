"""One real 3-master Redis Cluster for the whole run (it takes seconds to form)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_cluster.servers import RedisClusterServers


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
