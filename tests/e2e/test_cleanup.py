"""Session cleanup end to end: beat, a worker, redis-server and an S3 server.

The stack here is its own, with a TTL of seconds, so the session stack's
settings (and its conversations) are left alone.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest
import redis
from celery import Celery

from shared.queue import CLEANUP_TASK, QUEUE
from shared.store.keys import activity_key, agent_thread_key, thread_runs_key
from tests import servers
from tests.stack import Stack, launch

pytestmark = pytest.mark.e2e

TTL = 3.0
INTERVAL = 1.0
RECONCILE = 2.0
# Beat's tick, a worker's pass and the turn's own time, with room for a busy machine.
SLACK = 8.0


@pytest.fixture(scope="module")
def cleanup_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("cleanup")
    redis_proc = servers.redis_server(workdir / "redis").start()
    s3_proc = servers.s3_server(workdir / "s3").start()
    try:
        with launch(f"redis://127.0.0.1:{redis_proc.port}/0", f"http://127.0.0.1:{s3_proc.port}",
                    workdir / "stack", workers=1, beat=True, LLM_PROVIDER="echo",
                    SESSION_TTL_SECONDS=str(int(TTL)),
                    CLEANUP_INTERVAL_SECONDS=str(int(INTERVAL)),
                    CLEANUP_RECONCILE_SECONDS=str(int(RECONCILE))) as stack:
            yield stack
    finally:
        s3_proc.stop()
        redis_proc.stop()


@pytest.fixture(autouse=True)
def _fresh_llm() -> None:
    """Replaces the e2e conftest's fixture, which would start the session stack."""


@pytest.fixture(scope="module")
def index(cleanup_stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(cleanup_stack.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def new_thread(stack: Stack, message: str = "hello") -> str:
    reply = stack.client.post("/chat", json={"message": message})
    assert reply.status_code == 200, reply.text
    thread_id: str = reply.json()["thread_id"]
    return thread_id


def objects_of(stack: Stack, thread_id: str) -> int:
    s3 = boto3.client("s3", endpoint_url=stack.env["S3_ENDPOINT_URL"], region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=stack.env["S3_BUCKET_NAME"],
                                Prefix=f"{stack.env['S3_PREFIX']}{thread_id}/")
    return int(listed["KeyCount"])


def gone(stack: Stack, thread_id: str) -> bool:
    history = stack.client.get(f"/chat/history/{thread_id}")
    assert history.status_code in (200, 404), history.text
    return history.status_code == 404 and objects_of(stack, thread_id) == 0


def wait_gone(stack: Stack, thread_id: str, within: float) -> float:
    """Seconds until the thread is gone; fails after `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if gone(stack, thread_id):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"thread still there after {within}s")


def worker_log(stack: Stack) -> str:
    return "".join(w.log() for w in stack.workers)


def test_an_idle_thread_is_gone_after_the_ttl_and_one_interval(cleanup_stack: Stack) -> None:
    thread = new_thread(cleanup_stack)
    assert cleanup_stack.client.get(f"/chat/history/{thread}").status_code == 200
    assert objects_of(cleanup_stack, thread) > 0

    waited = wait_gone(cleanup_stack, thread, within=TTL + INTERVAL + SLACK)

    assert waited >= TTL - 0.5  # not before its time


def test_a_thread_in_use_survives_while_an_idle_one_goes(cleanup_stack: Stack) -> None:
    idle = new_thread(cleanup_stack, "left alone")
    busy = new_thread(cleanup_stack, "turn 0")
    turns = 1
    started = time.monotonic()
    while time.monotonic() - started < 2 * TTL + INTERVAL:
        reply = cleanup_stack.client.post("/chat", json={"message": f"turn {turns}",
                                                         "thread_id": busy})
        assert reply.status_code == 200, reply.text
        turns += 1
        history = cleanup_stack.client.get(f"/chat/history/{busy}")
        assert history.status_code == 200, history.text
        assert len(history.json()["messages"]) == 2 * turns  # every turn kept, in full
        time.sleep(0.5)

    wait_gone(cleanup_stack, idle, within=SLACK)
    assert not gone(cleanup_stack, busy)


def wait_status(stack: Stack, path: str, status: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (reply := stack.client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} still {reply.status_code} after {within}s"
        time.sleep(0.1)


def test_a_langgraph_thread_s_metadata_lives_as_long_as_its_conversation(
        cleanup_stack: Stack, index: redis.Redis) -> None:
    client = cleanup_stack.client
    kept = client.post("/threads", json={"metadata": {"topic": "kept"}}).json()["thread_id"]
    idle = client.post("/threads", json={"metadata": {"topic": "idle"}}).json()["thread_id"]
    started = time.monotonic()
    while time.monotonic() - started < 2 * TTL + INTERVAL:
        # In use through POST /chat alone: the metadata must not lapse meanwhile.
        reply = client.post("/chat", json={"message": "still here", "thread_id": kept})
        assert reply.status_code == 200, reply.text
        time.sleep(0.5)

    wait_status(cleanup_stack, f"/threads/{idle}", 404, within=SLACK)
    thread = client.get(f"/threads/{kept}")
    runs = client.get(f"/threads/{kept}/runs", params={"limit": 100})

    assert thread.status_code == 200, thread.text
    assert thread.json()["metadata"]["topic"] == "kept"
    assert len(runs.json()) > 2  # the chat messages, as runs
    wait_gone(cleanup_stack, kept, within=TTL + INTERVAL + SLACK)
    assert client.get(f"/threads/{kept}").status_code == 404
    assert index.exists(agent_thread_key(kept), thread_runs_key(kept)) == 0


def test_a_thread_missing_from_the_index_is_found_by_the_scan(
        cleanup_stack: Stack, index: redis.Redis) -> None:
    thread = new_thread(cleanup_stack)
    seen = len(worker_log(cleanup_stack))
    index.zrem(activity_key(thread), thread)

    wait_gone(cleanup_stack, thread, within=TTL + RECONCILE + INTERVAL + SLACK)

    later = worker_log(cleanup_stack)[seen:]
    assert re.search(r"cleanup_reconciled\s+reindexed=[1-9]", later), later[-3000:]


def test_two_cleanup_tasks_at_once_delete_each_thread_once(cleanup_stack: Stack) -> None:
    threads = [new_thread(cleanup_stack, f"thread {n}") for n in range(4)]
    time.sleep(TTL)  # all expired; beat's own passes race the two sent below
    sender = Celery(broker=cleanup_stack.env["REDIS_URL"])
    try:
        for _ in range(2):
            sender.send_task(CLEANUP_TASK, queue=QUEUE)
    finally:
        sender.close()

    for thread in threads:
        wait_gone(cleanup_stack, thread, within=INTERVAL + SLACK)

    log = worker_log(cleanup_stack)
    deleted = Counter(re.findall(r"thread_deleted\s+.*?thread_id=([\w-]+)", log))
    assert all(deleted[t] == 1 for t in threads), deleted
    assert max(deleted.values()) == 1  # no thread of this module deleted twice
    assert "thread_delete_failed" not in log
    assert "Traceback" not in log


def test_beat_sent_the_passes_and_none_failed(cleanup_stack: Stack) -> None:
    [beat] = cleanup_stack.extra
    assert "Sending due task cleanup-idle-conversations" in beat.log()
    for server in [*cleanup_stack.workers, beat]:
        assert "Traceback" not in server.log(), server.log()[-3000:]
    assert "cleanup_done" in worker_log(cleanup_stack)
