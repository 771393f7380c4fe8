"""The chat path end to end, through real processes on loopback."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]


def test_wait_mode_answers_with_the_reply(stack: Stack) -> None:
    reply = stack.client.post("/chat", json={"message": "hello there"})

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["response"] == "echo: hello there"
    assert body["language"] == "English"
    assert set(body) == {"response", "language", "thread_id", "job_id"}
    job = stack.client.get(f"/chat/jobs/{body['job_id']}").json()
    assert job["status"] == "succeeded"
    assert job["response"] == "echo: hello there"
    assert job["thread_id"] == body["thread_id"]
    assert datetime.fromisoformat(job["finished_at"]) >= datetime.fromisoformat(job["created_at"])


def test_poll_mode_gives_a_job_to_poll(stack: Stack) -> None:
    reply = stack.client.post("/chat", params={"wait": "false"}, json={"message": "poll me"})

    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["status"] in ("queued", "running")
    assert reply.headers["location"] == f"/chat/jobs/{body['job_id']}"
    job = stack.wait_job(body["job_id"])
    assert job["status"] == "succeeded"
    assert job["response"] == "echo: poll me"


def test_wait_timeout_falls_back_to_202_and_the_job_goes_on(stack: Stack) -> None:
    stack.control(delay=1.5)

    reply = stack.client.post("/chat", params={"timeout": "0.3"}, json={"message": "slow"})

    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] in ("queued", "running")
    job = stack.wait_job(reply.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["response"] == "echo: slow"


def test_second_turn_sees_the_first_and_history_keeps_order(stack: Stack) -> None:
    first = stack.client.post("/chat", json={"message": "my name is Ada"}).json()
    thread = first["thread_id"]
    second = stack.client.post("/chat", json={"message": "what is my name?",
                                              "thread_id": thread})
    assert second.status_code == 200, second.text

    sent = stack.llm_calls()[-1]["request"]["messages"]
    assert [m["content"] for m in sent[1:]] == [
        "my name is Ada", "echo: my name is Ada", "what is my name?"]
    history = stack.client.get(f"/chat/history/{thread}").json()
    assert history["thread_id"] == thread
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("human", "my name is Ada"), ("assistant", "echo: my name is Ada"),
        ("human", "what is my name?"), ("assistant", "echo: what is my name?")]
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in history["messages"]]
    assert stamps == sorted(stamps)
    assert all(s.utcoffset() is not None and s.utcoffset().total_seconds() == 0 for s in stamps)


def test_language_reaches_the_system_prompt(stack: Stack) -> None:
    reply = stack.client.post("/chat", json={"message": "bonjour", "language": "French"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["language"] == "French"
    system = stack.llm_calls()[-1]["request"]["messages"][0]
    assert system["role"] == "system"
    assert "French" in system["content"]


def test_rejected_llm_call_fails_the_job_and_stores_nothing(stack: Stack) -> None:
    first = stack.client.post("/chat", json={"message": "kept"}).json()
    thread = first["thread_id"]

    reply = stack.client.post("/chat", json={"message": "please FAIL_400", "thread_id": thread})

    assert reply.status_code == 502, reply.text
    body = reply.json()
    # A fixed text. The provider's own message ("... rejected by the fake ...")
    # can quote the prompt: it reaches no one, the log neither (unless
    # LOG_MESSAGE_BODIES), which names the fixed text.
    assert body["detail"] == "the LLM provider refused the request"
    job = stack.client.get(f"/chat/jobs/{body['job_id']}").json()
    assert job["status"] == "failed"
    assert job["error"] == "the LLM provider refused the request"
    logs = "".join(w.log() for w in stack.workers)
    assert "rejected by the fake" not in logs
    assert "turn_rejected" in logs and "the LLM provider refused the request" in logs
    history = stack.client.get(f"/chat/history/{thread}").json()
    assert [m["content"] for m in history["messages"]] == ["kept", "echo: kept"]
    # The thread still works after a failed turn.
    again = stack.client.post("/chat", json={"message": "still here", "thread_id": thread})
    assert again.status_code == 200, again.text
    history = stack.client.get(f"/chat/history/{thread}").json()
    assert len(history["messages"]) == 4


def test_failed_first_turn_leaves_no_thread(stack: Stack) -> None:
    reply = stack.client.post("/chat", json={"message": "FAIL_400 at once"})

    assert reply.status_code == 502
    thread = stack.client.get(f"/chat/jobs/{reply.json()['job_id']}").json()["thread_id"]
    assert stack.client.get(f"/chat/history/{thread}").status_code == 404


def test_server_errors_are_retried_then_fail_with_502(stack: Stack) -> None:
    stack.control(fail_500=100)

    reply = stack.client.post("/chat", json={"message": "doomed"}, params={"timeout": "60"})

    assert reply.status_code == 502, reply.text
    assert reply.json()["detail"] == "the LLM provider is unavailable (gave up after 3 attempts)"
    assert len(stack.llm_calls()) == 3  # the first try and TURN_MAX_RETRIES=2 retries


def test_rate_limited_call_is_retried_after_retry_after(stack: Stack) -> None:
    stack.control(fail_429=1, retry_after=1)

    started = time.monotonic()
    reply = stack.client.post("/chat", json={"message": "after the pause"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["response"] == "echo: after the pause"
    calls = stack.llm_calls()
    assert len(calls) == 2
    assert calls[1]["received_at"] - calls[0]["received_at"] >= 0.9
    assert time.monotonic() - started >= 0.9


def test_delete_removes_the_conversation(stack: Stack) -> None:
    thread = stack.client.post("/chat", json={"message": "forget me"}).json()["thread_id"]

    assert stack.client.delete(f"/chat/history/{thread}").status_code == 204
    assert stack.client.get(f"/chat/history/{thread}").status_code == 404
    assert stack.client.delete(f"/chat/history/{thread}").status_code == 404


def test_idempotency_key_returns_the_same_job(stack: Stack) -> None:
    headers = {"Idempotency-Key": f"key-{time.time_ns()}"}
    body = {"message": "only once", "thread_id": f"idem{time.time_ns()}"}

    first = stack.client.post("/chat", json=body, headers=headers)
    second = stack.client.post("/chat", json=body, headers=headers)
    other = stack.client.post("/chat", json={**body, "message": "another"}, headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert other.status_code == 409
    history = stack.client.get(f"/chat/history/{body['thread_id']}").json()
    assert [m["content"] for m in history["messages"]] == ["only once", "echo: only once"]
    assert len(stack.llm_calls()) == 1


def test_cancel_a_running_job_stores_nothing(stack: Stack) -> None:
    stack.control(delay=5)
    accepted = stack.client.post("/chat", params={"wait": "false"},
                                 json={"message": "never mind"}).json()
    job_id = accepted["job_id"]
    deadline = time.monotonic() + 10
    while stack.client.get(f"/chat/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)

    reply = stack.client.post(f"/chat/jobs/{job_id}/cancel")

    assert reply.status_code == 202
    assert reply.json() == {"job_id": job_id, "status": "cancelling"}
    job = stack.wait_job(job_id, timeout=3)
    assert job["status"] == "cancelled"
    assert stack.client.get(f"/chat/history/{accepted['thread_id']}").status_code == 404
    assert stack.client.post(f"/chat/jobs/{job_id}/cancel").status_code == 409


@pytest.mark.parametrize(("body", "where"), [
    ({"message": ""}, "message"),
    ({"message": "   \n\t"}, "message"),
    ({"message": "x" * 32_001}, "message"),
    ({"message": "hi", "thread_id": "../etc"}, "thread_id"),
    ({"message": "hi", "thread_id": "a" * 129}, "thread_id"),
    ({"message": "hi", "language": "Fr3nch"}, "language"),
    ({"message": "hi", "language": ""}, "language"),
    ({"message": "hi", "extra": 1}, "extra"),
    ({}, "message"),
])
def test_bad_chat_requests_get_422_naming_the_field(stack: Stack, body: dict[str, object],
                                                    where: str) -> None:
    reply = stack.client.post("/chat", json=body)

    assert reply.status_code == 422
    assert where in reply.json()["detail"]
    assert stack.llm_calls() == []


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/chat/jobs/0123456789abcdef", 404),
    ("POST", "/chat/jobs/0123456789abcdef/cancel", 404),
    ("GET", "/chat/history/no-such-thread", 404),
    ("DELETE", "/chat/history/no-such-thread", 404),
    ("GET", "/chat/history/bad.id", 422),
    ("GET", "/chat/jobs/bad.id", 422),
])
def test_unknown_or_malformed_ids(stack: Stack, method: str, path: str, code: int) -> None:
    reply = stack.client.request(method, path)

    assert reply.status_code == code
    assert reply.json()["detail"]


def test_probes(stack: Stack) -> None:
    assert stack.client.get("/healthz").status_code == 200
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "s3": "ok"}
