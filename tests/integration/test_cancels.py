"""A worker process's cancel watch against a real redis-server, and a Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.redis_client import make_redis
from shared.store.job import STATUS, JobStatus
from shared.store.jobs import JobStore
from shared.store.keys import job_key
from tests import servers
from tests.helpers import a_job, accept
from worker.cancels import RESUBSCRIBE_SECONDS, CancelWatch


async def test_a_running_job_hears_its_cancel(jobs: JobStore) -> None:
    watch = CancelWatch(jobs.redis, jobs)
    watch.start()
    try:
        job = await accept(jobs, a_job())
        other = await accept(jobs, a_job())
        with watch.watching(job.job_id) as asked, watch.watching(other.job_id) as not_asked:
            await jobs.start(job.job_id)
            await jobs.start(other.job_id)
            # The request may be published before the subscription is up:
            # then the watch's catch-up finds it.
            assert await jobs.ask_cancel(job.job_id) == "cancelling"
            await asyncio.wait_for(asked.wait(), timeout=5)
            assert not not_asked.is_set()
    finally:
        await watch.stop()


async def test_a_request_made_while_no_one_listened_is_found(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    assert await jobs.ask_cancel(job.job_id) == "cancelling"

    watch = CancelWatch(jobs.redis, jobs)
    with watch.watching(job.job_id) as asked:
        watch.start()
        try:
            await asyncio.wait_for(asked.wait(), timeout=5)
        finally:
            await watch.stop()


async def test_a_request_published_to_a_listening_watch_arrives(jobs: JobStore) -> None:
    watch = CancelWatch(jobs.redis, jobs)
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    with watch.watching(job.job_id) as asked:
        watch.start()
        try:
            # Subscribed: the catch-up found nothing, so only the message can set it.
            await asyncio.wait_for(watch.listening.wait(), timeout=5)
            assert not asked.is_set()
            await jobs.ask_cancel(job.job_id)
            await asyncio.wait_for(asked.wait(), timeout=5)
        finally:
            await watch.stop()



async def _running_job_on_another_node(cluster: RedisCluster, node: str | None) -> str:
    """A running job whose record lies on a node other than `node`, written
    directly (what JobStore.start leaves), so its cancel is published there."""
    while True:
        job_id = uuid.uuid4().hex
        holder = cluster.get_node_from_key(job_key(job_id))
        if holder is not None and holder.name != node:
            await cluster.hset(job_key(job_id), STATUS, JobStatus.RUNNING)
            return job_id


@contextlib.asynccontextmanager
async def _listening(cluster: RedisCluster) -> AsyncIterator[tuple[CancelWatch, JobStore]]:
    jobs = JobStore(cast(Redis, cluster), ttl=3600)
    watch = CancelWatch(cast(Redis, cluster), jobs)
    watch.start()
    try:
        await asyncio.wait_for(watch.listening.wait(), timeout=5)
        yield watch, jobs
    finally:
        await watch.stop()


async def test_a_cancel_published_on_one_node_of_a_cluster_reaches_a_watch_on_another(
        redis_cluster: servers.RedisCluster) -> None:
    cluster = make_redis(redis_cluster.url, 8, cluster=True)
    try:
        async with _listening(cluster) as (watch, jobs):
            job_id = await _running_job_on_another_node(cluster, watch.node)
            with watch.watching(job_id) as asked:
                assert await jobs.ask_cancel(job_id) == "cancelling"
                await asyncio.wait_for(asked.wait(), timeout=5)
    finally:
        await cluster.aclose()


@pytest.mark.usefixtures("kills_a_cluster_node")
async def test_the_watch_moves_to_another_node_when_its_node_dies(tmp_path: Path) -> None:
    # A cluster of its own: the session's must keep all its nodes.
    own = servers.redis_cluster(tmp_path / "cluster").start()
    cluster = make_redis(own.url, 8, cluster=True)
    try:
        async with _listening(cluster) as (watch, jobs):
            # redis-py loads a missing script on every primary: loaded now,
            # while all answer.
            assert await jobs.ask_cancel(uuid.uuid4().hex) == "unknown"
            dead = watch.node
            next(n for n in own.nodes if f"127.0.0.1:{n.port}" == dead).kill()
            # Its subscription ends at once (the socket closes); the watch
            # waits RESUBSCRIBE_SECONDS before it subscribes again. The other
            # nodes serve their slots until they agree the node has failed
            # (cluster-node-timeout, 15 s): time enough.
            deadline = time.monotonic() + 2 * RESUBSCRIBE_SECONDS + 5
            while watch.node == dead or not watch.listening.is_set():
                assert time.monotonic() < deadline, "the watch stayed on its dead node"
                await asyncio.sleep(0.05)
            job_id = await _running_job_on_another_node(cluster, dead)
            with watch.watching(job_id) as asked:
                assert await jobs.ask_cancel(job_id) == "cancelling"
                await asyncio.wait_for(asked.wait(), timeout=5)
    finally:
        await cluster.aclose()
        own.stop()
