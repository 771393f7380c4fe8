"""GET /chat/threads end to end: order, pages, titles and counts, isolation
between keys, delete, and the index rebuilt from S3 after Redis lost it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import redis

from tests.helpers import bearer
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("keyed_llm")]

MINE = bearer("threads")
OTHER = bearer("other")


def say(stack: Stack, message: str, thread_id: str | None = None,
        headers: dict[str, str] = MINE) -> str:
    reply = stack.client.post("/chat", headers=headers,
                              json={"message": message, "thread_id": thread_id})
    assert reply.status_code == 200, reply.text
    found: str = reply.json()["thread_id"]
    return found


def listed(stack: Stack, headers: dict[str, str] = MINE, limit: int = 100) -> list[dict[str, Any]]:
    """Every thread of the key, walking all pages of `limit`."""
    threads: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = stack.client.get("/chat/threads", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["threads"]) <= limit
        threads += body["threads"]
        if body["next_before"] is None:
            return threads
        params["before"] = body["next_before"]


def test_newest_activity_first_and_pages_walk_each_thread_once(keyed: Stack) -> None:
    first, second, third = (say(keyed, f"thread {n}") for n in range(3))
    say(keyed, "again", first)  # the oldest becomes the newest

    walked = listed(keyed, limit=2)

    ids = [t["thread_id"] for t in walked]
    assert len(ids) == len(set(ids))
    mine = [t for t in ids if t in {first, second, third}]
    assert mine == [first, third, second]
    times = [datetime.fromisoformat(t["updated_at"]) for t in walked]
    assert times == sorted(times, reverse=True)
    assert listed(keyed, limit=100) == walked


def test_title_is_the_first_message_cut_short_and_messages_are_counted(keyed: Stack) -> None:
    long = "Tell me " + "about the sea " * 20
    thread = say(keyed, long)
    say(keyed, "and the sky?", thread)

    [entry] = [t for t in listed(keyed) if t["thread_id"] == thread]

    assert entry["messages"] == 4
    assert entry["title"].startswith("Tell me about the sea")
    assert entry["title"].endswith("…") and len(entry["title"]) <= 80


def test_a_key_sees_only_its_own_threads(keyed: Stack) -> None:
    mine = say(keyed, "mine")
    theirs = say(keyed, "theirs", headers=OTHER)

    assert mine in {t["thread_id"] for t in listed(keyed)}
    seen_by_other = {t["thread_id"] for t in listed(keyed, OTHER)}
    assert theirs in seen_by_other and mine not in seen_by_other
    assert keyed.client.get("/chat/threads").status_code == 401


def test_a_deleted_thread_leaves_the_list(keyed: Stack) -> None:
    thread = say(keyed, "to be deleted")
    assert keyed.client.delete(f"/chat/history/{thread}", headers=MINE).status_code == 204

    assert thread not in {t["thread_id"] for t in listed(keyed)}


def test_a_new_thread_whose_turn_failed_is_not_listed(keyed: Stack) -> None:
    failed = keyed.client.post("/chat", headers=MINE, json={"message": "FAIL_400 refused"})
    assert failed.status_code == 502, failed.text
    job = keyed.client.get(f"/chat/jobs/{failed.json()['job_id']}", headers=MINE).json()
    thread = job["thread_id"]

    assert thread not in {t["thread_id"] for t in listed(keyed)}


@pytest.mark.parametrize("params", [{"before": "nonsense"}, {"before": "nan:abc"},
                                    {"before": "1.5:bad id"}])
def test_a_malformed_cursor_is_400(keyed: Stack, params: dict[str, str]) -> None:
    reply = keyed.client.get("/chat/threads", params=params, headers=MINE)
    assert reply.status_code == 400, reply.text


def test_the_lists_come_back_from_s3_after_redis_lost_them(keyed: Stack) -> None:
    first = say(keyed, "kept in S3")
    say(keyed, "second turn", first)
    second = say(keyed, "also kept")
    theirs = say(keyed, "not yours", headers=OTHER)
    before = {t["thread_id"]: t for t in listed(keyed)}
    with redis.Redis.from_url(keyed.env["REDIS_URL"]) as store:
        store.flushdb()

    deadline = time.monotonic() + 30
    rebuilt: dict[str, dict[str, Any]] = {}
    while {first, second} - set(rebuilt):
        assert time.monotonic() < deadline, rebuilt
        time.sleep(0.2)
        rebuilt = {t["thread_id"]: t for t in listed(keyed)}

    for thread in (first, second):
        assert rebuilt[thread]["title"] == before[thread]["title"]
        assert rebuilt[thread]["messages"] == before[thread]["messages"]
    assert theirs not in rebuilt
    # Turns go on, and count on top of what was rebuilt.
    say(keyed, "after the loss", first)
    assert {t["thread_id"]: t["messages"] for t in listed(keyed)}[first] == 6
