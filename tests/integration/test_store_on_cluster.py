"""The store against a real Redis Cluster (three masters), keys hash-tagged
as with REDIS_CLUSTER=1: a job's whole life on threads spread over every
master, the owners' lists, the sweeps over every bucket, the LLM window and
the assistants' WATCH transactions.
A script or transaction naming keys of two slots fails here (CROSSSLOT)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from shared.ids import new_id, new_job_id, stored_thread_id
from shared.redis_client import make_redis
from shared.store import keys
from shared.store.agent_threads import NO_ROOM, WROTE, AgentThreads
from shared.store.assistants import Assistants
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox
from shared.store.job import Job, JobStatus
from shared.store.jobs import JobStore, Refused
from shared.store.limits import LlmWindow
from tests import servers
from tests.helpers import a_job

OWNER = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def cluster(redis_cluster: servers.RedisCluster,
                  cluster_keys: None) -> AsyncIterator[RedisCluster]:
    redis = make_redis(redis_cluster.url, 16, cluster=True)
    await redis.flushall()
    try:
        yield redis
    finally:
        await redis.aclose()


def _owned_job(thread: str, message: str = "hi", client: str = "c") -> Job:
    return dataclasses.replace(a_job(thread, message, client), owner=OWNER)


async def test_jobs_on_threads_over_every_master_run_their_whole_life(
        cluster: RedisCluster) -> None:
    jobs = JobStore(cluster, ttl=600)
    inbox = Inbox(cluster, jobs)
    lists = Conversations(cluster)
    threads = [stored_thread_id(OWNER, new_id()) for _ in range(24)]
    nodes = {cluster.get_node_from_key(keys.inbox_key(t)).name for t in threads}
    assert len(nodes) == 3, "the threads should land on every master"

    accepted = [await jobs.create(_owned_job(t, f"hello {i}"), 5, 100, new_thread=True)
                for i, t in enumerate(threads)]
    for job in accepted:
        lease = inbox.lease(job.thread_id, 30)
        ran, head = await inbox.take(job.thread_id, lease)
        assert ran and head == job.job_id
        started = await jobs.start(job.job_id, "task")
        assert started is not None and started.status == JobStatus.RUNNING
        assert await jobs.begin_commit(job.job_id)
        assert await jobs.succeed(started, f"reply to {job.title}")
        assert await inbox.release(job.thread_id, lease) == (True, None)

    page, _ = await lists.page(OWNER, 100)
    assert {c.thread_id for c in page} == set(threads)
    assert all(c.messages == 2 and c.title.startswith("hello") for c in page)
    assert await cluster.scard(keys.client_jobs_key(OWNER, "c")) == 0
    ended = await jobs.get(accepted[0].job_id)
    assert ended is not None and ended.status == JobStatus.SUCCEEDED
    assert ended.response == f"reply to {accepted[0].title}"


async def test_refusals_withdrawals_cancels_and_deletes_leave_nothing_behind(
        cluster: RedisCluster) -> None:
    jobs = JobStore(cluster, ttl=600)
    lists = Conversations(cluster)
    full = stored_thread_id(OWNER, new_id())
    await jobs.create(_owned_job(full), 1, 100, new_thread=True)
    with pytest.raises(Refused) as refused:
        await jobs.create(_owned_job(full), 1, 100)
    assert refused.value.what == "thread"
    with pytest.raises(Refused) as refused:
        await jobs.create(_owned_job(stored_thread_id(OWNER, new_id()), client="busy"), 5, 0)
    assert refused.value.what == "client"

    withdrawn = await jobs.create(_owned_job(stored_thread_id(OWNER, new_id())), 5, 100,
                                  new_thread=True)
    assert await jobs.withdraw(withdrawn)
    cancelled = await jobs.create(_owned_job(stored_thread_id(OWNER, new_id())), 5, 100,
                                  new_thread=True)
    assert await jobs.cancel(cancelled, only_if_queued=True)
    assert await jobs.get(cancelled.job_id) is not None
    await jobs.delete(cancelled)  # as a delete of an ended run does

    # Only the thread whose job is still queued is listed, and only its job counted.
    page, _ = await lists.page(OWNER, 100)
    assert [c.thread_id for c in page] == [full]
    assert await cluster.smembers(keys.client_jobs_key(OWNER, "c")) == {
        (await Inbox(cluster, jobs).first(full))}
    for job in (withdrawn, cancelled):
        assert await jobs.get(job.job_id) is None


async def test_the_sweep_and_cleanup_read_every_bucket(cluster: RedisCluster) -> None:
    jobs = JobStore(cluster, ttl=600)
    inbox = Inbox(cluster, jobs)
    lists = Conversations(cluster)
    threads = [stored_thread_id(OWNER, new_id()) for _ in range(12)]
    for thread in threads:
        job = await jobs.create(_owned_job(thread), 5, 100, new_thread=True)
        await jobs.start(job.job_id)  # its worker died: running, nobody holds the lease

    found = await inbox.sweep(stall_seconds=60, cancel_grace=60, lost_after=600, backlog=0)
    assert len(found.stalled) == len(threads)

    assert await lists.scan_due() and not await lists.complete()
    await lists.scanned(3600)
    assert await lists.complete() and not await lists.scan_due()

    now = float((await cluster.time())[0])
    idle = [t for part in range(lists.activity_parts())
            for t in await lists.idle_since(now + 1, 0, 100, part)]
    assert sorted(idle) == sorted(threads)
    assert await lists.forget_if_idle(threads[0], now + 1)
    page, _ = await lists.page(OWNER, 100)
    assert threads[0] not in {c.thread_id for c in page}
    assert await lists.unindexed(threads) == [threads[0]]
    assert await lists.index_activity({threads[0]: now}) == 1


async def test_langgraph_thread_records_and_the_llm_window(cluster: RedisCluster) -> None:
    records = AgentThreads(cluster)
    threads = [stored_thread_id(OWNER, new_id()) for _ in range(6)]
    for thread in threads:
        assert await records.upsert(thread, OWNER, "create", {"n": 1}, max_threads=10) == WROTE
    assert await records.upsert(stored_thread_id(OWNER, new_id()), OWNER, "create",
                                max_threads=6) == NO_ROOM
    job = await JobStore(cluster, ttl=600).create(_owned_job(threads[0]), 5, 100)
    await records.add_run(job, {"graph_id": "chat"}, ttl=600)
    found = await records.search(OWNER, True, 0, 10, lambda r: True)
    assert found[0].thread_id == threads[0] and {r.thread_id for r in found} == set(threads)
    assert await records.run_ids(threads[0]) == [job.job_id]
    await Conversations(cluster).forget(threads[1])
    assert await records.get(threads[1]) is None
    assert threads[1] not in {r.thread_id for r in await records.search(
        OWNER, True, 0, 10, lambda r: True)}

    window = LlmWindow(cluster, calls=2, period=60)
    assert [await window.hit("a"), await window.hit("b")] == [0.0, 0.0]
    assert await window.hit("a") > 0
    await window.pause(5)
    assert 0 < await window.paused_for() <= 5


async def test_a_job_id_made_for_a_thread_finds_its_record(cluster: RedisCluster) -> None:
    jobs = JobStore(cluster, ttl=600)
    thread = stored_thread_id(OWNER, new_id())
    job = await jobs.create(_owned_job(thread), 5, 100)
    assert job.job_id[-2:] == f"{keys.bucket_of_thread(thread):02x}"
    assert (await jobs.get_many([job.job_id, new_job_id(thread)]))[0] is not None


async def test_assistants_transactions(cluster: RedisCluster) -> None:
    assistants = Assistants(cluster)
    ids = [new_id() for _ in range(5)]
    for number, assistant_id in enumerate(ids):
        assert await assistants.create(OWNER, assistant_id, number, f"a{number}", "v1")
    assert not await assistants.create("other", ids[0], 9, "x", "v1")
    assert await assistants.add_version(OWNER, ids[0], lambda _, n: (f"a0v{n}", f"v{n}")) == "a0v2"
    assert await assistants.use_version(OWNER, ids[0], 1, lambda _, v: f"back to {v}") == (
        True, "back to v1")
    assert await assistants.delete(OWNER, ids[1])
    assert await assistants.all_current(OWNER) == ["back to v1", "a2", "a3", "a4"]
