"""Cancel requests reach the turns running in this process through one subscription.

The cancel script publishes a running job's id on CANCELS_CHANNEL; each
worker process listens on one connection and wakes the turn it runs, so a
turn waiting on the LLM costs Redis nothing and stops within a round trip.
Messages sent while the subscription was down are not replayed: every time
it (re)subscribes, it reads the flags of the turns it runs instead.

On a Redis Cluster, a PUBLISH on any node reaches the subscribers of every
node, so the process subscribes through a plain connection to one node (the
cluster client holds no subscription of its own), and to another node when
that one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.redis_client import any_node, node_client
from shared.store.jobs import JobStore

log = structlog.get_logger("worker.cancels")

RESUBSCRIBE_SECONDS = 1.0
# A quiet subscription is checked with a PING this often (the client's health
# check), so a dead connection is noticed and replaced.
QUIET_SECONDS = 30.0


class CancelWatch:
    def __init__(self, redis: Redis, jobs: JobStore) -> None:
        self.redis = redis
        self.jobs = jobs
        self._asked: dict[str, asyncio.Event] = {}
        self.listening = asyncio.Event()  # subscribed, and caught up
        self.node: str | None = None  # on a cluster, the node subscribed through
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when the job is asked to stop, from now on.

        Enter it before the job's start is recorded: a request is published
        only while the job runs, and must find it watched. One published
        before the subscription is up is found by its catch-up.
        """
        asked = self._asked[job_id] = asyncio.Event()
        try:
            yield asked
        finally:
            del self._asked[job_id]

    async def _listen(self) -> None:
        while True:
            try:
                async with self._connection() as redis, \
                        redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await self.jobs.subscribe_cancels(pubsub)
                    await self._catch_up()
                    self.listening.set()
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                           timeout=QUIET_SECONDS)
                        if message and (asked := self._asked.get(message["data"])):
                            asked.set()
            except Exception as exc:  # Redis went away: subscribe again when it is back
                self.listening.clear()
                log.warning("cancel_watch_down", error=type(exc).__name__)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Redis]:
        """What to subscribe through: the state's Redis, or on a cluster one of
        its nodes, not the one that failed last (if it was one)."""
        if not isinstance(self.redis, RedisCluster):
            yield self.redis
            return
        node = await any_node(self.redis, avoid=self.node)
        self.node = node.name
        client = node_client(node)
        try:
            yield client
        finally:
            await client.aclose()

    async def _catch_up(self) -> None:
        if self._asked:
            for job_id in await self.jobs.cancels_requested(list(self._asked)):
                if (asked := self._asked.get(job_id)) is not None:
                    asked.set()
