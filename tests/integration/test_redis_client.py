"""The state's Redis client against a Redis Cluster of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis_client import make_redis, ping
from tests import servers


async def test_a_cluster_answers_the_readiness_ping_only_while_every_primary_does(
        tmp_path: Path) -> None:
    own = servers.redis_cluster(tmp_path / "cluster").start()
    cluster = make_redis(own.url, 4, cluster=True)
    try:
        await ping(cluster)
        own.nodes[-1].kill()
        with pytest.raises(RedisConnectionError):
            await ping(cluster)
    finally:
        await cluster.aclose()
        own.stop()
