"""The edges: crowds, failed, cancelled and deleted turns, limits and recovery.

Real processes throughout: uvicorn, Celery workers, redis-server, the S3
server, and ChatGroq against the Groq-like test server.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.store.keys import job_key
from tests.helpers import crowd
from tests.stack import Stack, launch

pytestmark = pytest.mark.e2e

CROWD = 1000


def send(stack: Stack, message: str, thread: str | None = None) -> dict[str, Any]:
    reply = stack.client.post("/chat", params={"wait": "false"},
                              json={"message": message, "thread_id": thread})
    assert reply.status_code == 202, reply.text
    job: dict[str, Any] = reply.json()
    return job


def started(stack: Stack, message: str, thread: str) -> str:
    """A job whose LLM call is under way (the caller makes the LLM slow)."""
    job_id: str = send(stack, message, thread)["job_id"]
    stack.wait_job(job_id, until=("running",))
    deadline = time.monotonic() + 10
    while not any(c["messages"][-1]["content"] == message for c in stack.llm_calls()):
        assert time.monotonic() < deadline, "the LLM call never started"
        time.sleep(0.02)
    return job_id


def a_stored_thread(stack: Stack) -> str:
    reply = stack.client.post("/chat", json={"message": "kept"})
    assert reply.status_code == 200, reply.text
    thread: str = reply.json()["thread_id"]
    return thread


# --- a crowd on one gateway ----------------------------------------------------

def test_one_gateway_holds_a_crowd_of_waiters_and_streams(stack: Stack,
                                                          fresh_llm: None) -> None:
    stack.control(hold=True)
    try:
        held = asyncio.run(crowd(str(stack.client.base_url), CROWD,
                                 release=lambda: stack.control(hold=False)))
    finally:
        stack.control(hold=False)

    assert held.ready == [200] * 5
    assert Counter(held.statuses) == {200: CROWD}
    for n, (reply, events, job_id) in enumerate(
            zip(held.replies, held.streams, held.job_ids, strict=True)):
        assert reply["job_id"] == job_id
        assert reply["response"] == f"echo: crowd {n}"
        assert events[-1].type == "done"
        assert events[-1].data["response"] == f"echo: crowd {n}"
    asked = Counter(c["messages"][-1]["content"] for c in stack.llm_calls())
    assert asked == {f"crowd {n}": 1 for n in range(CROWD)}


# --- failed, cancelled and deleted turns -------------------------------------

def test_a_failed_turn_leaves_the_stored_thread_as_it_was(stack: Stack, fresh_llm: None) -> None:
    thread = a_stored_thread(stack)
    before = stack.objects(thread)
    assert before

    reply = stack.client.post("/chat", json={"message": "FAIL_400", "thread_id": thread})

    assert reply.status_code == 502
    assert stack.objects(thread) == before


def test_a_cancelled_turn_leaves_the_stored_thread_as_it_was(stack: Stack,
                                                            fresh_llm: None) -> None:
    thread = a_stored_thread(stack)
    before = stack.objects(thread)
    stack.control(delay=5)
    job_id = started(stack, "stop me", thread)

    cancel = stack.client.post(f"/chat/jobs/{job_id}/cancel")

    assert cancel.status_code == 202
    assert stack.wait_job(job_id)["status"] == "cancelled"
    assert stack.objects(thread) == before


def test_delete_during_a_turn_wins(stack: Stack, fresh_llm: None) -> None:
    thread = a_stored_thread(stack)
    stack.control(delay=5)
    running = started(stack, "in flight", thread)
    queued = send(stack, "next in line", thread)["job_id"]

    deleted = stack.client.delete(f"/chat/history/{thread}")

    assert deleted.status_code == 204
    assert stack.wait_job(running)["status"] == "cancelled"
    assert stack.wait_job(queued)["status"] == "cancelled"
    assert stack.objects(thread) == {}
    assert stack.client.get(f"/chat/history/{thread}").status_code == 404
    # The id is free for a new conversation.
    stack.control(delay=0)
    again = stack.client.post("/chat", json={"message": "fresh", "thread_id": thread})
    assert again.status_code == 200
    history = stack.client.get(f"/chat/history/{thread}").json()["messages"]
    assert [m["content"] for m in history] == ["fresh", "echo: fresh"]


def test_a_cancel_either_wins_or_says_it_lost(stack: Stack, fresh_llm: None) -> None:
    stack.control(delay=0.05)
    seen: Counter[int] = Counter()
    for n in range(12):
        thread = a_stored_thread(stack)
        job_id = send(stack, f"race {n}", thread)["job_id"]
        stack.wait_job(job_id, until=("running", "succeeded"))
        time.sleep(random.uniform(0, 0.1))  # lands anywhere around the end of the turn

        cancel = stack.client.post(f"/chat/jobs/{job_id}/cancel")

        status = stack.wait_job(job_id)["status"]
        stored = [m["content"] for m in
                  stack.client.get(f"/chat/history/{thread}").json()["messages"]]
        seen[cancel.status_code] += 1
        if cancel.status_code == 202:
            assert (status, stored) == ("cancelled", ["kept", "echo: kept"])
        else:
            assert cancel.status_code == 409, cancel.text
            assert status == "succeeded"
            assert stored[-1] == f"echo: race {n}"
    print(f"cancel races: {dict(seen)}")


# --- limits ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway_alone(redis_url: str, s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    with launch(redis_url.removesuffix("/0") + "/4", s3_endpoint, workdir / "workerless",
                workers=0, MAX_QUEUED_PER_CLIENT="3", MAX_QUEUED_PER_THREAD="2") as stack:
        yield stack


@pytest.fixture
def workerless(gateway_alone: Stack) -> Stack:
    """A gateway with small limits and no workers (what it accepts stays
    queued), its Redis emptied: every test is a new client."""
    with redis.Redis.from_url(gateway_alone.env["REDIS_URL"]) as store:
        store.flushdb()
    return gateway_alone


def queued_jobs(stack: Stack) -> int:
    """Job records and Celery messages in Redis."""
    with redis.Redis.from_url(stack.env["REDIS_URL"]) as store:
        return len(list(store.scan_iter(job_key("*")))) + int(store.llen("chat"))


def test_a_full_thread_refuses_with_429_and_queues_nothing(workerless: Stack) -> None:
    thread = f"full{time.time_ns()}"
    for n in range(2):
        send(workerless, f"m{n}", thread)
    before = queued_jobs(workerless)

    over = workerless.client.post("/chat", params={"wait": "false"},
                                  json={"message": "one more", "thread_id": thread})

    assert over.status_code == 429
    assert int(over.headers["retry-after"]) > 0
    assert "thread" in over.json()["detail"]
    assert queued_jobs(workerless) == before


def test_a_client_over_its_share_gets_429(workerless: Stack) -> None:
    for n in range(3):
        send(workerless, f"c{n}")
    before = queued_jobs(workerless)

    over = workerless.client.post("/chat", params={"wait": "false"}, json={"message": "c3"})

    assert over.status_code == 429
    assert int(over.headers["retry-after"]) > 0
    assert "your jobs" in over.json()["detail"]
    assert queued_jobs(workerless) == before


# --- recovery without beat -----------------------------------------------------

LEASE = 3


@pytest.fixture(scope="module")
def beatless(redis_url: str, s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    with launch(redis_url.removesuffix("/0") + "/5", s3_endpoint, workdir / "beatless",
                workers=2, beat=False, THREAD_LEASE_SECONDS=str(LEASE),
                RECOVERY_INTERVAL_SECONDS="1") as stack:
        yield stack


def test_a_sigkilled_turn_runs_again_without_beat(beatless: Stack) -> None:
    beatless.control(delay=4)
    thread = f"nobeat{time.time_ns()}"
    job_id = started(beatless, "survive", thread)
    holder = next(w for w in beatless.workers if job_id in w.log())

    holder.kill()
    killed_at = time.monotonic()
    beatless.control(delay=0)
    job = beatless.wait_job(job_id, timeout=LEASE + 10)

    print(f"recovered without beat {time.monotonic() - killed_at:.1f}s after SIGKILL")
    assert job["status"] == "succeeded"
    history = beatless.client.get(f"/chat/history/{thread}").json()["messages"]
    assert [m["content"] for m in history] == ["survive", "echo: survive"]
    beatless.workers.remove(holder)
