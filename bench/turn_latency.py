"""Time of one chat turn end to end, with the echo model.

Starts the whole stack on loopback (redis-server, moto's S3 server, the
gateway, one worker), then sends sequential `POST /chat` turns (waited) on
one thread and prints the median, p90 and p99. Run: `python -m bench.turn_latency`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.stack import launch_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--new-threads", action="store_true",
                        help="a new conversation each turn (else one growing conversation)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            launch_all(Path(tmp), workers=1, LLM_PROVIDER="echo") as stack:
        thread = None
        times = []
        queued, running, delivered = [], [], []
        for n in range(args.warmup + args.turns):
            body: dict[str, object] = {"message": f"turn {n}", "thread_id": thread}
            started = time.perf_counter()
            reply = stack.client.post("/chat", json=body)
            elapsed = time.perf_counter() - started
            done_at = time.time()
            reply.raise_for_status()
            thread = None if args.new_threads else reply.json()["thread_id"]
            if n >= args.warmup:
                times.append(elapsed * 1000)
                job = stack.client.get(f"/chat/jobs/{reply.json()['job_id']}").json()
                record = stack.job_record(job["job_id"])
                queued.append((record["started_at"] - record["created_at"]) * 1000)
                running.append((record["finished_at"] - record["started_at"]) * 1000)
                delivered.append((done_at - record["finished_at"]) * 1000)
        times.sort()
        pct = statistics.quantiles(times, n=100)
        where = "each on a new thread" if args.new_threads else "on one thread"
        print(f"{args.turns} sequential turns {where}, echo model, loopback")
        print(f"  p50 {statistics.median(times):.1f} ms   p90 {pct[89]:.1f} ms   "
              f"p99 {pct[98]:.1f} ms   min {times[0]:.1f} ms   max {times[-1]:.1f} ms")
        print(f"  of which (p50): accepted->started {statistics.median(queued):.1f} ms, "
              f"started->finished {statistics.median(running):.1f} ms, "
              f"finished->client {statistics.median(delivered):.1f} ms")


if __name__ == "__main__":
    main()
