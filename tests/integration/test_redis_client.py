"""The state's Redis client against a Redis Cluster of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis_client import learn_nodes, make_redis, ping
from tests import servers


@pytest.mark.usefixtures("kills_a_cluster_node")
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


async def test_commands_sent_at_once_by_a_new_process_all_run(
        redis_cluster: servers.RedisCluster) -> None:
    # Without learn_nodes, about half of these fail on a transport another
    # closed (redis-py 8.1 learning the cluster on first use, once per command).
    cluster = make_redis(redis_cluster.url, 32, cluster=True)
    count = cluster.register_script("return redis.call('INCR', KEYS[1])")
    key = f"{{at-once}}{uuid.uuid4().hex}"
    try:
        await learn_nodes(cluster)
        replies = await asyncio.gather(*(count(keys=[key]) for _ in range(20)),
                                       return_exceptions=True)
        assert sorted(replies) == list(range(1, 21))
    finally:
        await cluster.aclose()
