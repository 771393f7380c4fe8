"""Thread records of the LangGraph Server API against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.agent.records import ThreadRecords
from shared.store.agent_threads import SCAN_BATCH, ThreadRecord
from shared.store.job import Job
from shared.store.keys import (
    activity_key,
    agent_thread_key,
    agent_threads_key,
    inbox_key,
    thread_runs_key,
)
from tests.helpers import empty_database


@pytest.fixture
async def records(redis_url: str) -> AsyncIterator[ThreadRecords]:
    async with empty_database(redis_url, 6) as redis:
        yield ThreadRecords(redis)


async def test_create_once_update_only_what_exists_merge_metadata(
        records: ThreadRecords) -> None:
    assert await records.write("t", "o", "create", {"a": 1, "b": [1, 2]})
    assert not await records.write("t", "o", "create", {"a": 2})
    assert not await records.write("missing", "o", "update", {"a": 1})
    assert await records.write("t", "o", "update", {"a": {"x": None}, "c": "new"})

    record = await records.get("t")

    assert record is not None and await records.get("missing") is None
    assert record.metadata == {"a": {"x": None}, "b": [1, 2], "c": "new"}
    assert record.owner == "o" and record.updated_at >= record.created_at
    assert record.matches({"b": [1, 2], "c": "new"}) and not record.matches({"c": "old"})
    # It lives as long as the conversation: no expiry of its own, but a place
    # in the activity index by which cleanup deletes idle conversations.
    assert await records.redis.ttl(agent_thread_key("t")) == -1
    assert await records.redis.zscore(activity_key("t"), "t") == pytest.approx(record.updated_at)


async def test_search_pages_newest_first_and_forgets_deleted_threads(
        records: ThreadRecords) -> None:
    count = SCAN_BATCH + 50  # more than one round of the index
    for n in range(count):
        await records.write(f"t{n}", "o", "create", {"even": n % 2 == 0})
    await records.write("other", "someone-else", "create")
    await records.redis.delete(agent_thread_key("t2"))  # deleted
    await records.redis.rpush(inbox_key("t4"), "job")  # busy

    def even(record: ThreadRecord) -> bool:
        return bool(record.metadata["even"])

    page = await records.search("o", True, 1, 3, even)
    last = await records.search("o", True, 0, count, even)

    newest_evens = [f"t{n}" for n in range(count - 1, -1, -1) if n % 2 == 0 and n != 2]
    assert [r.thread_id for r in page] == newest_evens[1:4]
    assert [r.thread_id for r in last] == newest_evens
    assert [r.busy for r in last if r.thread_id == "t4"] == [True]
    assert await records.redis.zscore(agent_threads_key("o"), "t2") is None
    assert await records.search("nobody", True, 0, 10, even) == []


async def test_a_queued_job_is_listed_among_its_threads_runs(records: ThreadRecords) -> None:
    job = Job(job_id="j1", thread_id="t", title="hi", owner="o", client="c", created_at=100.0)

    await records.add_run(job, {"graph_id": "chat"}, ttl=60)

    record = await records.get("t")
    assert record is not None and record.metadata == {"graph_id": "chat"}
    assert await records.redis.zrange(thread_runs_key("t"), 0, -1, withscores=True) == [
        ("j1", 100.0)]
    assert 0 < await records.redis.ttl(thread_runs_key("t")) <= 60
