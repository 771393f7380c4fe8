"""GET /metrics end to end: one scrape adds up the gateway and every worker
process, and its counters and histograms move with what the turns did."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from celery import Celery
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from shared.queue import CLEANUP_TASK, MAINTENANCE_QUEUE
from tests.helpers import bearer
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("keyed_llm")]

KEY = bearer("metrics")
SUCCEEDING = 4  # one for each turn the stack's two workers run at once (2 each)


def scrape(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one scrape, by name and labels."""
    reply = stack.client.get("/metrics", headers=KEY)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text)
            for s in family.samples}


def moved(before: dict[tuple[str, frozenset[tuple[str, str]]], float],
          after: dict[tuple[str, frozenset[tuple[str, str]]], float],
          name: str, **labels: str) -> float:
    """How much the sum of `name`'s samples with `labels` grew."""
    def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
        return sum(v for (n, ls), v in samples.items()
                   if n == name and set(labels.items()) <= ls)
    return total(after) - total(before)


def processes_that_counted(directory: Path, name: str, outcome: str) -> set[str]:
    """The processes whose own file holds a non-zero `name` for `outcome`."""
    found = set()
    for path in directory.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == name and labels.get("outcome") == outcome and value > 0:
                found.add(path.stem.removeprefix("counter_"))
    return found


def post(stack: Stack, message: str) -> str:
    reply = stack.client.post("/chat", params={"wait": "false"}, headers=KEY,
                              json={"message": message})
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


def test_metrics_need_a_key(keyed: Stack) -> None:
    assert keyed.client.get("/metrics").status_code == 401


def test_counts_of_every_process_move_with_the_turns(keyed: Stack) -> None:
    before = scrape(keyed)
    keyed.control(hold=True, reply_tokens=3)
    succeeding = [post(keyed, f"count me {n}") for n in range(SUCCEEDING)]
    # Every child holds a turn at once: the counts come from four processes.
    deadline = time.monotonic() + 30
    while len(keyed.llm_calls()) < SUCCEEDING:
        assert time.monotonic() < deadline, keyed.llm_calls()
        time.sleep(0.05)
    keyed.control(hold=False)
    jobs = [keyed.wait_job(j, headers=KEY) for j in succeeding]
    assert {j["status"] for j in jobs} == {"succeeded"}
    failing = post(keyed, "FAIL_400 please")
    assert keyed.wait_job(failing, headers=KEY)["status"] == "failed"
    keyed.control(hold=True)
    cancelled = post(keyed, "stop me")
    deadline = time.monotonic() + 30
    # Cancelled once its LLM call is under way (held), so that call counts.
    while not any(c["messages"][-1]["content"] == "stop me" for c in keyed.llm_calls()):
        assert time.monotonic() < deadline, "the LLM call did not start"
        time.sleep(0.05)
    assert keyed.client.post(f"/chat/jobs/{cancelled}/cancel", headers=KEY).status_code == 202
    assert keyed.wait_job(cancelled, headers=KEY)["status"] == "cancelled"

    after = scrape(keyed)

    outcomes = Counter({o: moved(before, after, "chat_turns_total", outcome=o)
                        for o in ("succeeded", "failed", "cancelled")})
    assert outcomes == Counter(succeeded=SUCCEEDING, failed=1, cancelled=1)
    assert moved(before, after, "chat_turn_duration_seconds_count",
                 outcome="succeeded") == SUCCEEDING
    assert moved(before, after, "chat_queue_wait_seconds_count") == SUCCEEDING + 2
    assert moved(before, after, "chat_first_token_seconds_count") == SUCCEEDING
    assert moved(before, after, "chat_llm_calls_total") == SUCCEEDING + 2
    assert moved(before, after, "chat_llm_tokens_total") >= SUCCEEDING * 3
    assert moved(before, after, "chat_http_requests_total", method="POST", route="/chat",
                 status="202") == SUCCEEDING + 2
    assert moved(before, after, "chat_http_request_duration_seconds_count",
                 method="POST", route="/chat") == SUCCEEDING + 2
    assert moved(before, after, "chat_s3_requests_total", operation="PutObject") > 0
    assert moved(before, after, "chat_s3_requests_total", operation="GetObject") > 0
    assert ("chat_queue_depth", frozenset({("queue", "chat")})) in after
    counted = processes_that_counted(Path(keyed.env["PROMETHEUS_MULTIPROC_DIR"]),
                                     "chat_turns_total", "succeeded")
    assert len(counted) >= 2, counted


def test_provider_429s_and_cleanup_passes_are_counted(keyed: Stack) -> None:
    before = scrape(keyed)
    keyed.control(fail_429=1, retry_after=0.2)

    assert keyed.wait_job(post(keyed, "throttled once"), headers=KEY)["status"] == "succeeded"
    sender = Celery(broker=keyed.env["REDIS_URL"])
    try:
        sender.send_task(CLEANUP_TASK, queue=MAINTENANCE_QUEUE)
    finally:
        sender.close()
    deadline = time.monotonic() + 30
    while moved(before, after := scrape(keyed), "chat_cleanup_passes_total") < 1:
        assert time.monotonic() < deadline, "no cleanup pass was counted"
        time.sleep(0.2)

    assert moved(before, after, "chat_llm_rate_limited_total") == 1
    assert moved(before, after, "chat_llm_limit_wait_seconds_total") >= 0.2
    assert moved(before, after, "chat_llm_calls_total") == 2
    assert ("chat_cleanup_threads_deleted_total", frozenset()) in after
