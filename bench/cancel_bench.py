"""How fast a cancel closes the provider's HTTP stream, many times in a row.

A provider bills every token it goes on generating, so a cancelled turn's LLM
connection must close at once. Starts the whole stack on loopback (the
Groq-like server through ChatGroq, streaming a long reply slowly) and, ROUNDS
times, starts a turn, waits until its LLM call is under way, cancels it and
measures the time from the cancel being sent to the server seeing the
connection closed. Every other round also queues a second turn behind the
first on the same thread and cancels the two together (the case that once
left a stream open for seconds). Prints the closing times: p50, p99, max,
and how many took a second or more.

Run: `python -m bench.cancel_bench [--rounds 100]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.stack import Stack, launch_all

POLL_SECONDS = 0.01
# A connection open this long after its cancel is reported, and counted at this.
STILL_OPEN_SECONDS = 5.0


def until(what: str, check: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(POLL_SECONDS)
    return found


def call_of(stack: Stack, message: str) -> dict[str, Any] | None:
    return next((c for c in stack.llm_calls() if c["messages"][-1]["content"] == message), None)


def one_round(stack: Stack, with_queued: bool) -> float:
    client = stack.client
    message = f"cancel me {uuid.uuid4().hex}"
    job = client.post("/chat", params={"wait": "false"}, json={"message": message}).json()
    behind = None
    if with_queued:
        behind = client.post("/chat", params={"wait": "false"},
                             json={"message": "behind", "thread_id": job["thread_id"]}).json()
    until("the LLM call starts", lambda: call_of(stack, message))
    if behind is not None:
        assert client.post(f"/chat/jobs/{behind['job_id']}/cancel").status_code == 202
    asked_at = time.time()
    answered = client.post(f"/chat/jobs/{job['job_id']}/cancel")
    assert answered.status_code == 202, answered.text
    try:
        closed = until("the LLM connection closes",
                       lambda: (call_of(stack, message) or {}).get("disconnected_at"),
                       within=STILL_OPEN_SECONDS)
    except TimeoutError:
        state = client.get(f"/chat/jobs/{job['job_id']}").json()
        call = {k: v for k, v in (call_of(stack, message) or {}).items() if k != "messages"}
        print(f"still open after {STILL_OPEN_SECONDS} s: job {state}, LLM call {call}",
              flush=True)
        return float(STILL_OPEN_SECONDS)
    return float(closed) - asked_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, launch_all(Path(tmp), workers=2) as stack:
        stack.client.post("/chat", json={"message": "warm up"}).raise_for_status()
        stack.control(reply_tokens=2000, token_delay=0.01)
        closes = []
        for n in range(args.rounds):
            stack.groq_client.delete("/_calls").raise_for_status()
            closes.append(one_round(stack, with_queued=n % 2 == 1))
        closes.sort()
        slow = sum(c >= 1.0 for c in closes)
        print(f"{len(closes)} cancels (half with a turn queued behind): LLM connection closed "
              f"after p50 {statistics.median(closes) * 1000:.0f} ms, "
              f"p99 {closes[int(len(closes) * 0.99) - 1] * 1000:.0f} ms, "
              f"max {closes[-1] * 1000:.0f} ms; {slow} took 1 s or more")


if __name__ == "__main__":
    main()
