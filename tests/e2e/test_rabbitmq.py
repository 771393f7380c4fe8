"""RabbitMQ as Celery's broker (`CELERY_BROKER_URL`), Redis for the state.

The tests of queueing, order, crashes, cancels, deletes and streaming that
depend on how turns travel through the broker run again here, imported from
their modules, against one stack whose broker is a real rabbitmq-server
(behind a proxy a test can cut); the rest of the suite runs on Redis alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.chat_runs import chat_job
from shared.store.jobs import JobStore
from shared.store.keys import inbox_key, job_key
from tests import servers
from tests.e2e.rerun import *  # noqa: F403  (run here again, on RabbitMQ)
from tests.stack import Stack, launch_faulty

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]


@pytest.fixture(scope="module")
def broker_proxy(workdir: Path) -> Iterator[servers.TcpProxy]:
    try:
        rabbit = servers.rabbitmq_server(workdir / "rabbitmq").start(timeout=60)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    proxy = servers.TcpProxy(rabbit.port).start()  # type: ignore[arg-type]
    try:
        yield proxy
    finally:
        proxy.stop()
        rabbit.stop()


@pytest.fixture(scope="module")
def faulty(workdir: Path, s3_endpoint: str, broker_proxy: servers.TcpProxy) -> Iterator[Stack]:
    url = f"amqp://guest:guest@127.0.0.1:{broker_proxy.port}//"
    with launch_faulty(workdir, s3_endpoint, "on-rabbitmq", CELERY_BROKER_URL=url) as stack:
        yield stack


@pytest.fixture(scope="module")
def stack(faulty: Stack) -> Stack:
    """The tests written for the shared stack run on this one."""
    return faulty


def test_turns_travel_through_rabbitmq_not_redis(faulty: Stack) -> None:
    reply = faulty.client.post("/chat", json={"message": "by rabbit"})

    assert reply.status_code == 200, reply.text
    with redis.Redis.from_url(faulty.env["REDIS_URL"]) as store:
        # Kombu's Redis transport keeps its queues and bindings under these names.
        assert not store.exists("chat", "chat-maintenance", "_kombu.binding.chat")
    metrics = faulty.client.get("/metrics").text
    assert 'chat_queue_depth{queue="chat"} 0.0' in metrics


def test_a_broker_that_is_down_is_503_and_nothing_is_queued(
        faulty: Stack, broker_proxy: servers.TcpProxy) -> None:
    thread = f"brokerdown{time.time_ns()}"
    broker_proxy.stop()
    try:
        down = faulty.client.post("/chat", json={"message": "lost?", "thread_id": thread})
    finally:
        broker_proxy.start()

    assert down.status_code == 503, down.text
    assert "broker" in down.json()["detail"]
    assert down.headers["retry-after"]
    with redis.Redis.from_url(faulty.env["REDIS_URL"]) as store:
        assert store.llen(inbox_key(thread)) == 0
    assert faulty.client.get(f"/chat/history/{thread}").status_code == 404
    # Back up: the same message goes through (the gateway reconnects).
    again = faulty.client.post("/chat", json={"message": "found", "thread_id": thread})
    assert again.status_code == 200, again.text


async def test_a_job_whose_nudge_was_lost_is_run_by_the_recovery_sweep(faulty: Stack) -> None:
    """As if a gateway died between recording a job and sending its task:
    the sweep sees the job queued past RECOVERY_STALL_SECONDS (3 s here)
    with RabbitMQ's queue empty, and sends the task again."""
    thread = f"nonudge{time.time_ns()}"
    store = redis.asyncio.Redis.from_url(faulty.env["REDIS_URL"], decode_responses=True)
    try:
        job = chat_job("chat", uuid.uuid4().hex, thread, "no nudge", "English",
                       owner="", client="test", first=True)
        await JobStore(store, 3600).create(job, max_in_thread=10, max_for_client=10,
                                           new_thread=True)
        recorded = time.monotonic()
        done = faulty.wait_job(job.job_id, timeout=30)
        took = time.monotonic() - recorded
    finally:
        await store.aclose()

    assert done["status"] == "succeeded"
    print(f"a lost nudge cost {took:.1f}s (stall time 3 s, sweep every 1 s)")
    assert took >= 3
    assert faulty.client.get(f"/chat/history/{thread}").json()["messages"][-1]["content"] \
        == "echo: no nudge"
    with redis.Redis.from_url(faulty.env["REDIS_URL"]) as sync_store:
        assert sync_store.exists(job_key(job.job_id))
