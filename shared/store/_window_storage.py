"""Where the `limits` library keeps a MovingWindow (limits.py): the state's Redis.

On a single Redis the library runs on the caller's connection pool. It takes
no cluster client nor pool, and builds its own client from a URL of seed
nodes: so on a Redis Cluster a window has a cluster client of its own,
seeded from the nodes and options the state's client was given. A process
has one window of a kind, so one such client each.
"""

from __future__ import annotations

from typing import cast

from limits.aio.storage import RedisClusterStorage, RedisStorage
from redis.asyncio import Redis, SSLConnection
from redis.asyncio.cluster import RedisCluster

# The state client's options the window's cluster client takes alike.
_SHARED_OPTIONS = ("username", "password", "max_connections", "socket_timeout",
                   "socket_connect_timeout", "ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile",
                   "ssl_keyfile", "ssl_check_hostname")


def window_storage(redis: Redis | RedisCluster, key_prefix: str) -> RedisStorage:
    if not isinstance(redis, RedisCluster):
        # limits documents `connection_pool` but types its options as scalars.
        return RedisStorage("async+redis://", implementation="redispy", key_prefix=key_prefix,
                            connection_pool=redis.connection_pool)  # type: ignore[arg-type]
    seeds = ",".join(f"{node.host}:{node.port}" for node in redis.startup_nodes)
    given = redis.get_connection_kwargs()
    options = {name: given[name] for name in _SHARED_OPTIONS if given.get(name) is not None}
    if issubclass(cast(type, given["connection_class"]), SSLConnection):
        options["ssl"] = True
    # mypy reads the options as possibly the storage's own bool arguments.
    return RedisClusterStorage(f"async+redis+cluster://{seeds}", implementation="redispy",
                               key_prefix=key_prefix, **options)  # type: ignore[arg-type]


async def close_storage(storage: RedisStorage) -> None:
    """Closes the cluster client the library made for `storage`, if it made one
    (the caller's pool is the caller's to close)."""
    if isinstance(storage, RedisClusterStorage):
        client = cast(RedisCluster, storage.bridge.storage)  # type: ignore[attr-defined]
        await client.aclose()
