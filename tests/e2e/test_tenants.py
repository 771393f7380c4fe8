"""Many keys on one service: what one tenant can do to another, or to the service.

One stack of its own, on its own redis-server (which a test may fill up, and
restores), with two API keys and a metrics token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from shared.ids import digest_id, stored_thread_id
from shared.settings import Settings
from shared.storage import open_saver
from shared.store.jobs import JobStore
from shared.store.keys import (
    activity_key,
    agent_thread_key,
    agent_threads_key,
    events_key,
    inbox_key,
    job_key,
    owner_threads_key,
    thread_info_key,
    thread_runs_key,
)
from tests.helpers import a_job, accept, stack_of_its_own
from tests.stack import Stack

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "tenant-key-a-0123456789", "tenant-key-b-0123456789"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
METRICS_TOKEN = "metrics-token-for-the-scraper"
STREAMS_PER_KEY = 3
THREADS_PER_KEY = 40


@pytest.fixture(scope="module")
def tenants(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("tenants"), workers=1,
                          API_KEYS=f"{KEY_A},{KEY_B}", METRICS_TOKEN=METRICS_TOKEN,
                          MAX_WAITS_PER_KEY=str(STREAMS_PER_KEY),
                          MAX_THREADS_PER_CLIENT=str(THREADS_PER_KEY)) as stack:
        yield stack


@pytest.fixture(scope="module")
def store(tenants: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(tenants.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def chat(stack: Stack, headers: dict[str, str], message: str) -> dict[str, Any]:
    reply = stack.client.post("/chat", json={"message": message}, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_a_conversation_recorded_as_another_key_s_is_not_opened(
        tenants: Stack, store: redis.Redis) -> None:
    thread_id = chat(tenants, A, "a's secret")["thread_id"]
    # A mix-up no request can make: A's conversation, and a record naming
    # A, where B's thread of that id would be stored.
    asyncio.run(_copy(tenants, stored_thread_id(digest_id(KEY_A), thread_id),
                      stored_thread_id(digest_id(KEY_B), thread_id)))
    now = str(time.time())
    store.hset(agent_thread_key(stored_thread_id(digest_id(KEY_B), thread_id)), mapping={
        "owner": digest_id(KEY_A), "created_at": now, "updated_at": now})

    for path in (f"/threads/{thread_id}", f"/threads/{thread_id}/state",
                 f"/chat/history/{thread_id}"):
        reply = tenants.client.get(path, headers=B)
        assert reply.status_code == 404, (path, reply.text)
        assert "secret" not in reply.text


def _settings(stack: Stack) -> Settings:
    return Settings(**{k: v for k, v in stack.env.items() if k in Settings.model_fields})


async def _copy(stack: Stack, source: str, target: str, move: bool = False) -> None:
    async with open_saver(_settings(stack)) as saver:
        await saver.acopy_thread(source, target)
        if move:
            await saver.adelete_thread(source)


async def _store_as_before(stack: Stack, store: redis.Redis, owner: str, bare: str) -> None:
    """Puts the owner's thread where the code before private ids stored it:
    under its bare id, in S3 and in Redis."""
    stored = stored_thread_id(owner, bare)
    await _copy(stack, stored, bare, move=True)
    for key in (agent_thread_key, thread_runs_key, thread_info_key):
        store.rename(key(stored), key(bare))
    for index in (owner_threads_key(owner), agent_threads_key(owner), activity_key(bare)):
        score = store.zscore(index, stored)
        assert score is not None, index
        store.zrem(index, stored)
        store.zadd(index, {bare: score})


def test_a_thread_stored_under_its_bare_id_moves_to_its_key_s_on_first_read(
        tenants: Stack, store: redis.Redis) -> None:
    chosen = f"from-before-{uuid.uuid4().hex}"
    owner = digest_id(KEY_A)
    made = tenants.client.post("/threads", json={"thread_id": chosen, "metadata": {"kept": 1}},
                               headers=A)
    assert made.status_code == 200, made.text
    said = tenants.client.post("/chat", json={"message": "said before", "thread_id": chosen},
                               headers=A)
    assert said.status_code == 200, said.text
    stored = stored_thread_id(owner, chosen)
    asyncio.run(_store_as_before(tenants, store, owner, chosen))
    assert tenants.objects(chosen) and not tenants.objects(stored)

    # Another key's read finds nothing of it, and moves nothing.
    assert tenants.client.get(f"/chat/history/{chosen}", headers=B).status_code == 404
    assert tenants.client.get(f"/threads/{chosen}", headers=B).status_code == 404
    assert tenants.objects(chosen) and not tenants.objects(stored)
    # Its owner's first read finds it, and moves it to the key's own place.
    history = tenants.client.get(f"/chat/history/{chosen}", headers=A)
    assert history.status_code == 200, history.text
    assert [m["content"] for m in history.json()["messages"]][:1] == ["said before"]
    assert tenants.objects(stored) and not tenants.objects(chosen)
    assert not store.exists(agent_thread_key(chosen))
    thread = tenants.client.get(f"/threads/{chosen}", headers=A).json()
    assert thread["metadata"]["kept"] == 1
    listed = tenants.client.get("/chat/threads", params={"limit": 100}, headers=A).json()
    assert [t["thread_id"] for t in listed["threads"]].count(chosen) == 1
    runs = tenants.client.get(f"/threads/{chosen}/runs", headers=A).json()
    assert [r["thread_id"] for r in runs] == [chosen]
    # And the conversation goes on there.
    again = tenants.client.post("/chat", json={"message": "said after", "thread_id": chosen},
                                headers=A)
    assert again.status_code == 200, again.text
    history = tenants.client.get(f"/chat/history/{chosen}", headers=A).json()
    assert [m["content"] for m in history["messages"]][::2] == ["said before", "said after"]


METADATA_CASES = [
    ("65 keys", {f"k{n}": n for n in range(65)}),
    ("5,000 keys", {f"k{n}": n for n in range(5000)}),
    ("17 KB", {"note": "x" * 17_000}),
]


@pytest.mark.parametrize(("what", "metadata"), METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_metadata_over_its_limits_is_413_and_changes_nothing(
        tenants: Stack, what: str, metadata: dict[str, Any]) -> None:
    client = tenants.client
    thread_id = client.post("/threads", json={"metadata": {"kept": True}},
                            headers=A).json()["thread_id"]
    said = {"messages": [{"role": "user", "content": "hi"}]}

    refused = [
        client.post("/threads", json={"metadata": metadata}, headers=A),
        client.patch(f"/threads/{thread_id}", json={"metadata": metadata}, headers=A),
        client.post(f"/threads/{thread_id}/runs",
                    json={"assistant_id": "chat", "input": said, "metadata": metadata},
                    headers=A),
        client.post("/assistants", json={"graph_id": "chat", "metadata": metadata},
                    headers=A),
    ]

    for reply in refused:
        assert reply.status_code == 413, (what, reply.request.url, reply.text[:300])
        assert "64 keys" in reply.json()["detail"]
    thread = client.get(f"/threads/{thread_id}", headers=A)
    assert thread.status_code == 200 and thread.json()["metadata"] == {"kept": True}
    assert client.get(f"/threads/{thread_id}/runs", headers=A).json() == []


def test_metadata_merged_past_its_limits_is_413(tenants: Stack) -> None:
    client = tenants.client
    first = {f"a{n}": n for n in range(40)}
    thread_id = client.post("/threads", json={"metadata": first}, headers=A).json()["thread_id"]
    assistant_id = client.post("/assistants", json={"graph_id": "chat", "metadata": first},
                               headers=A).json()["assistant_id"]
    more = {f"b{n}": n for n in range(40)}

    thread = client.patch(f"/threads/{thread_id}", json={"metadata": more}, headers=A)
    assistant = client.patch(f"/assistants/{assistant_id}", json={"metadata": more},
                             headers=A)

    assert thread.status_code == 413, thread.text
    assert assistant.status_code == 413, assistant.text
    assert client.get(f"/threads/{thread_id}", headers=A).json()["metadata"] == first
    assert client.get(f"/assistants/{assistant_id}", headers=A).json()["version"] == 1


def test_metrics_take_their_own_token_and_no_tenant_key(tenants: Stack) -> None:
    scraped = tenants.client.get("/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "chat_http_requests" in scraped.text
    for headers in (A, {}, {"Authorization": "Bearer wrong"}):
        refused = tenants.client.get("/metrics", headers=headers)
        assert refused.status_code == 401, refused.text
    # The token opens nothing else.
    assert tenants.client.get("/chat/threads", headers={
        "Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 401


def test_a_full_redis_is_503_and_nothing_is_half_written(tenants: Stack,
                                                         store: redis.Redis) -> None:
    thread_id = chat(tenants, A, "before")["thread_id"]
    keys_before = set(store.scan_iter())
    store.config_set("maxmemory-policy", "noeviction")
    # Below what it holds: Redis refuses every write until it is raised again.
    store.config_set("maxmemory", str(int(store.info("memory")["used_memory"]) // 2))
    try:
        replies = [
            tenants.client.post("/chat", json={"message": "while full", "thread_id": thread_id},
                                headers=A),
            tenants.client.post("/threads", json={"metadata": {"n": 1}}, headers=A),
            tenants.client.post(f"/threads/{thread_id}/runs/wait", json={
                "assistant_id": "chat",
                "input": {"messages": [{"role": "user", "content": "while full"}]}},
                headers=A),
        ]
        for reply in replies:
            assert reply.status_code == 503, (reply.request.url, reply.text)
            assert "out of memory" in reply.json()["detail"]
            assert reply.headers["Retry-After"]
        assert set(store.scan_iter()) <= keys_before  # nothing written (some may expire)
    finally:
        store.config_set("maxmemory", "0")
    after = tenants.client.post("/chat", json={"message": "after", "thread_id": thread_id},
                                headers=A)
    assert after.status_code == 200, after.text
    history = tenants.client.get(f"/chat/history/{thread_id}", headers=A).json()["messages"]
    assert [m["content"] for m in history][::2] == ["before", "after"]


async def _a_job_whose_commit_failed(redis_url: str, thread_id: str) -> str:
    """A job on the thread as a worker leaves it when its commit failed: queued
    for a retry, not cancellable (its write may have landed)."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        jobs = JobStore(client, ttl=3600)
        job = await accept(jobs, a_job(thread_id, "stored, or not?"))
        await jobs.start(job.job_id)
        assert await jobs.begin_commit(job.job_id)
        await jobs.requeue(job.job_id)
        assert await jobs.ask_cancel(job.job_id) == "ended"
        return job.job_id
    finally:
        await client.aclose()


def test_a_delete_ends_a_job_whose_commit_failed_so_nothing_comes_back(
        tenants: Stack, store: redis.Redis) -> None:
    answered = chat(tenants, A, "to be deleted")
    thread_id = answered["thread_id"]
    stored = stored_thread_id(digest_id(KEY_A), thread_id)
    job_id = asyncio.run(_a_job_whose_commit_failed(tenants.env["REDIS_URL"], stored))

    deleted = tenants.client.delete(f"/chat/history/{thread_id}", headers=A)

    assert deleted.status_code == 204, deleted.text
    assert store.hget(job_key(job_id), "status") == "cancelled"
    assert store.llen(inbox_key(stored)) == 0
    assert tenants.client.get(f"/chat/history/{thread_id}", headers=A).status_code == 404
    # Gone from Redis too: the reply at once, the rest of the job within a minute.
    job = tenants.client.get(f"/chat/jobs/{answered['job_id']}", headers=A)
    assert job.status_code in (200, 404), job.text
    assert "to be deleted" not in job.text
    for key in (job_key(answered["job_id"]), events_key(answered["job_id"]), job_key(job_id)):
        assert 0 < store.ttl(key) <= 60, key


def test_one_key_s_streams_leave_room_for_another_key_s(tenants: Stack) -> None:
    client = tenants.client
    tenants.control(hold=True)  # the LLM answers nothing: the jobs stay unfinished
    try:
        theirs = client.post("/chat", params={"wait": "false"}, json={"message": "a"},
                             headers=A).json()["job_id"]
        mine = client.post("/chat", params={"wait": "false"}, json={"message": "b"},
                           headers=B).json()["job_id"]
        with contextlib.ExitStack() as held:
            for _ in range(STREAMS_PER_KEY):
                stream = held.enter_context(
                    client.stream("GET", f"/chat/jobs/{theirs}/events", headers=A))
                assert stream.status_code == 200
            # Each stream counts once its reader has subscribed: wait for that.
            deadline = time.monotonic() + 10
            while True:
                with client.stream("GET", f"/chat/jobs/{theirs}/events", headers=A) as refused:
                    if refused.status_code == 429:
                        refused.read()
                        break
                assert time.monotonic() < deadline, "a fourth stream of key A was let in"
            assert "one key may" in refused.json()["detail"]
            assert refused.headers["Retry-After"]
            with client.stream("GET", f"/chat/jobs/{mine}/events", headers=B) as other:
                assert other.status_code == 200
            waited = client.post("/chat", params={"timeout": 0.1}, json={"message": "c"},
                                 headers=B)
            assert waited.status_code == 202, waited.text
    finally:
        tenants.control(hold=False)


def test_a_runs_listing_reads_a_bounded_page(tenants: Stack) -> None:
    thread_id = chat(tenants, A, "one run")["thread_id"]
    client = tenants.client
    for params in ({"offset": 1001}, {"limit": 101}):
        refused = client.get(f"/threads/{thread_id}/runs", params=params, headers=A)
        assert refused.status_code == 422, (params, refused.text)
        assert next(iter(params)) in refused.json()["detail"]
    listed = client.get(f"/threads/{thread_id}/runs", params={"offset": 1000, "limit": 100},
                        headers=A)
    assert listed.status_code == 200 and listed.json() == []


def test_a_key_s_threads_are_capped_and_its_old_ones_go_on(tenants: Stack) -> None:
    client = tenants.client
    first = client.post("/chat", params={"wait": "false"}, json={"message": "t"},
                        headers=B).json()["thread_id"]
    for _ in range(THREADS_PER_KEY):  # bounded: the cap is met within it
        refused = client.post("/chat", params={"wait": "false"}, json={"message": "t"},
                              headers=B)
        if refused.status_code != 202:
            break
    listed = client.get("/chat/threads", params={"limit": 100}, headers=B).json()["threads"]
    old = client.post("/chat", params={"wait": "false"},
                      json={"message": "again", "thread_id": first}, headers=B)
    theirs = client.post("/chat", params={"wait": "false"}, json={"message": "t"}, headers=A)

    assert refused.status_code == 429, refused.text
    assert "MAX_THREADS_PER_CLIENT" in refused.json()["detail"]
    assert "Retry-After" not in refused.headers  # threads do not free up by waiting
    assert len(listed) == THREADS_PER_KEY
    assert old.status_code == 202 and theirs.status_code == 202


def test_a_key_s_langgraph_threads_are_capped_too(tenants: Stack) -> None:
    client = tenants.client
    for _ in range(THREADS_PER_KEY + 1):  # bounded: the cap is met within it
        made = client.post("/threads", json={}, headers=B)
        if made.status_code != 200:
            break

    assert made.status_code == 429, made.text
    assert "MAX_THREADS_PER_CLIENT" in made.json()["detail"]
    assert client.post("/threads", json={}, headers=A).status_code == 200
