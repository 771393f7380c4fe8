"""The one way the gateway and the workers open Redis.

Each process has one pool, of REDIS_MAX_CONNECTIONS connections. A command
that finds them all busy waits up to POOL_WAIT_SECONDS for one instead of
failing at once (redis-py's default pool raises past its size). Nothing holds
a pooled connection for long: the gateway's waiting clients share one reader
(api/events.py), so the pool's size bounds commands in flight, not clients.

Asked for a Redis Cluster, it returns redis-py's cluster client instead, which
finds the nodes from the one in the URL and sends each command to the node
holding its keys' slot. Its pools are per node, of the same size, and do not
wait: a command that finds a node's all busy fails at once (MaxConnectionsError).
It has no subscriptions of its own to give: `node_client` opens one node
plainly for that, and `ping` asks every primary, not one node.
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING, Literal, cast, overload

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)

if TYPE_CHECKING:
    from shared.settings import Settings

# What a Redis Cluster answers while a node is down or failing over, or its
# slots are moving: like a connection error, it passes.
CLUSTER_UNAVAILABLE = (ClusterDownError, TryAgainError, SlotNotCoveredError)

# Blocking reads (XREAD BLOCK) wait at most this long per call, so a dead
# connection is noticed within SOCKET_TIMEOUT and a live one never times out.
SOCKET_TIMEOUT = 10.0
MAX_BLOCK_MS = 5000
POOL_WAIT_SECONDS = 5.0


@overload
def make_redis(url: str, max_connections: int, cluster: Literal[False] = False) -> Redis: ...
@overload
def make_redis(url: str, max_connections: int, cluster: Literal[True]) -> RedisCluster: ...
@overload
def make_redis(url: str, max_connections: int, cluster: bool) -> Redis | RedisCluster: ...
def make_redis(url: str, max_connections: int, cluster: bool = False) -> Redis | RedisCluster:
    options = {"decode_responses": True, "socket_timeout": SOCKET_TIMEOUT,
               "socket_connect_timeout": 2, "health_check_interval": 30}
    if cluster:
        return RedisCluster.from_url(url, max_connections=max_connections, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, **options)
    return Redis.from_pool(pool)  # the client owns the pool: aclose closes it


def state_redis(settings: Settings, max_connections: int | None = None) -> Redis:
    """The state's Redis (REDIS_URL): a cluster client when REDIS_CLUSTER is on.
    `max_connections`: the pool's size, REDIS_MAX_CONNECTIONS unless given.

    Typed as `Redis`, which the stores take: the cluster client answers the
    same commands. What only one of the two has (pub/sub, the pool) is
    reached through an isinstance check where it is used.
    """
    return cast(Redis, make_redis(settings.REDIS_URL,
                                  max_connections or settings.REDIS_MAX_CONNECTIONS,
                                  cluster=settings.REDIS_CLUSTER))


async def learn_nodes(redis: Redis | RedisCluster) -> None:
    """On a Redis Cluster, learns its nodes and slots now if it can. redis-py's
    async cluster client (8.1) learns them on first use, and commands sent at
    once before that close each other's connections (AttributeError or
    RuntimeError on a closed transport, not a RedisError). A cluster not up
    yet is learnt on first use, as before: the process still starts."""
    if isinstance(redis, RedisCluster):
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await redis.initialize()


async def ping(redis: Redis | RedisCluster) -> None:
    """Raises unless Redis answers: on a cluster, every primary, since one
    that does not serves none of its slots (a PING alone goes to one node)."""
    if isinstance(redis, RedisCluster):
        await redis.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.ping()


async def any_node(cluster: RedisCluster, avoid: str | None = None) -> ClusterNode:
    """One node of the cluster, at random, other than `avoid` (a node's name,
    host:port) while there is another."""
    await cluster.initialize()
    nodes = cluster.get_nodes()
    return random.choice([n for n in nodes if n.name != avoid] or nodes)


def node_client(node: ClusterNode) -> Redis:
    """A plain client of one cluster node, with the cluster client's options
    (auth, TLS, timeouts), on a small pool of its own: for what the cluster
    client cannot do, as hold a subscription."""
    pool = ConnectionPool(connection_class=node.connection_class, max_connections=2,
                          **node.connection_kwargs)
    return Redis.from_pool(pool)


async def redis_now(redis: Redis) -> float:
    """Redis's clock (TIME), the one every stored time and score is on: a
    worker's or a gateway's own clock may be off from it."""
    seconds, micros = await redis.time()
    return seconds + micros / 1_000_000
