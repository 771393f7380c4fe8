"""Streaming replies over SSE, resuming, and cancelling, through real processes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.sse import SseEvent, read_events, reply_of
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]


def stream_chat(stack: Stack, body: dict[str, object]) -> tuple[str, list[SseEvent]]:
    with stack.client.stream("POST", "/chat", params={"stream": "true"}, json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        return reply.headers["x-job-id"], list(read_events(reply))


def history(stack: Stack, thread: str) -> list[str]:
    return [m["content"] for m in stack.client.get(f"/chat/history/{thread}").json()["messages"]]


def test_streamed_tokens_make_the_reply_that_is_stored(stack: Stack) -> None:
    stack.control(reply_tokens=40, token_delay=0.005)

    job_id, events = stream_chat(stack, {"message": "tell me"})

    assert events[-1].type == "done"
    done = events[-1].data
    tokens = [e for e in events if e.type == "token"]
    assert len(tokens) > 1
    assert reply_of(events) == done["response"] == " ".join(f"w{n}" for n in range(40))
    assert done["job_id"] == job_id
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))  # type: ignore[union-attr]
    assert history(stack, done["thread_id"]) == ["tell me", done["response"]]


def test_a_reconnect_with_last_event_id_gets_exactly_what_was_missed(stack: Stack) -> None:
    stack.control(reply_tokens=60, token_delay=0.02)
    accepted = stack.client.post("/chat", params={"wait": "false"}, json={"message": "long"})
    job_id = accepted.json()["job_id"]

    seen: list[SseEvent] = []
    with stack.client.stream("GET", f"/chat/jobs/{job_id}/events") as first:
        for event in read_events(first):
            seen.append(event)
            if sum(e.type == "token" for e in seen) == 5:
                break  # the client drops
    with stack.client.stream("GET", f"/chat/jobs/{job_id}/events",
                             headers={"Last-Event-ID": seen[-1].id or ""}) as again:
        rest = list(read_events(again))

    everything = seen + rest
    assert [e.id for e in everything] == sorted({e.id for e in everything},  # no duplicate
                                                key=lambda i: tuple(map(int, i.split("-"))))  # type: ignore[union-attr]
    assert rest[-1].type == "done"
    assert reply_of(everything) == rest[-1].data["response"]

    # After the job finished: a full replay that ends by itself.
    with stack.client.stream("GET", f"/chat/jobs/{job_id}/events") as replay:
        replayed = list(read_events(replay))
    assert [e.id for e in replayed] == [e.id for e in everything]


def test_cancel_a_running_stream_closes_the_llm_call(stack: Stack) -> None:
    thread = f"cancel{time.time_ns()}"
    first = stack.client.post("/chat", json={"message": "keep", "thread_id": thread})
    assert first.status_code == 200
    stack.control(reply_tokens=400, token_delay=0.02)

    with stack.client.stream("POST", "/chat", params={"stream": "true"},
                             json={"message": "stop me", "thread_id": thread}) as reply:
        job_id = reply.headers["x-job-id"]
        events: list[SseEvent] = []
        cancelled_at = 0.0
        for event in read_events(reply):
            events.append(event)
            if event.type == "token" and not cancelled_at:
                answer = stack.client.post(f"/chat/jobs/{job_id}/cancel")
                assert answer.status_code == 202
                cancelled_at = time.time()

    assert events[-1].type == "cancelled"
    assert stack.client.get(f"/chat/jobs/{job_id}").json()["status"] == "cancelled"
    call = stack.llm_calls()[-1]
    assert call["disconnected_at"] is not None
    assert call["disconnected_at"] - cancelled_at < 1.0
    assert history(stack, thread) == ["keep", "echo: keep"]
    assert stack.client.post(f"/chat/jobs/{job_id}/cancel").status_code == 409


def test_cancel_a_queued_job_means_it_never_runs(stack: Stack) -> None:
    stack.control(delay=1.5)
    thread = f"queued{time.time_ns()}"
    busy = stack.client.post("/chat", params={"wait": "false"},
                             json={"message": "first", "thread_id": thread}).json()
    queued = stack.client.post("/chat", params={"wait": "false"},
                               json={"message": "second", "thread_id": thread}).json()

    answer = stack.client.post(f"/chat/jobs/{queued['job_id']}/cancel")

    assert answer.status_code == 202
    with stack.client.stream("GET", f"/chat/jobs/{queued['job_id']}/events") as events:
        assert [e.type for e in read_events(events)] == ["cancelled"]
    assert stack.wait_job(busy["job_id"])["status"] == "succeeded"
    assert stack.client.get(f"/chat/jobs/{queued['job_id']}").json()["status"] == "cancelled"
    assert history(stack, thread) == ["first", "echo: first"]
    assert all(c["messages"][-1]["content"] != "second" for c in stack.llm_calls())


def test_a_failing_job_stream_ends_with_error(stack: Stack) -> None:
    job_id, events = stream_chat(stack, {"message": "FAIL_400 please"})

    assert [e.type for e in events] == ["error"]
    assert events[0].data["job_id"] == job_id
    assert events[0].data["detail"] == "the LLM provider refused the request"


# Redis stream ids are two unsigned 64-bit numbers; Redis refuses larger ones.
BIGGEST_ID_PART = 2**64 - 1


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "1" * 30 + "-0",
                                 f"{BIGGEST_ID_PART + 1}-0", f"0-{BIGGEST_ID_PART + 1}",
                                 "99999999999999999999-99999999999999999999"])
def test_malformed_last_event_id_is_400(stack: Stack, bad: str) -> None:
    job_id = stack.client.post("/chat", json={"message": "hi"}).json()["job_id"]
    reply = stack.client.get(f"/chat/jobs/{job_id}/events", headers={"Last-Event-ID": bad})
    assert reply.status_code == 400
    assert "Last-Event-ID" in reply.json()["detail"]


def test_the_largest_last_event_id_ends_a_finished_stream_with_its_outcome(
        stack: Stack) -> None:
    job_id = stack.client.post("/chat", json={"message": "hi"}).json()["job_id"]
    last = f"{BIGGEST_ID_PART}-{BIGGEST_ID_PART}"
    with stack.client.stream("GET", f"/chat/jobs/{job_id}/events",
                             headers={"Last-Event-ID": last}) as reply:
        assert reply.status_code == 200
        events = list(read_events(reply))
    assert [e.type for e in events] == ["done"]
    assert events[0].data["job_id"] == job_id


def test_unknown_job_stream_is_404(stack: Stack) -> None:
    assert stack.client.get("/chat/jobs/0123456789abcdef/events").status_code == 404


def test_stream_rejects_bad_input_before_any_event(stack: Stack) -> None:
    reply = stack.client.post("/chat", params={"stream": "true"}, json={"message": " "})
    assert reply.status_code == 422


def test_twenty_concurrent_streams_all_complete_in_order(stack: Stack) -> None:
    stack.control(reply_tokens=50, token_delay=0.005)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda n: stream_chat(stack, {"message": f"s{n}"}), range(20)))

    for _job_id, events in results:
        assert events[-1].type == "done"
        assert reply_of(events) == events[-1].data["response"]
        assert history(stack, events[-1].data["thread_id"])[1] == events[-1].data["response"]
