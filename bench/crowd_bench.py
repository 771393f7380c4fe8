"""How many waiting clients and open streams one gateway process holds.

Starts the whole stack on loopback (redis-server, moto's S3 server, one
gateway, two workers, the Groq-like server through ChatGroq), then for each
crowd size: holds the LLM's answers, queues that many jobs, and puts on each
one client waiting on POST /chat and one reading its SSE stream. With all of
them open it reads the gateway's memory and /readyz, then lets the answers
go. Prints, per size: the clients held, how many ended 200 with their own
reply, the gateway's memory per client, and the wait's overhead (from the job
finishing in Redis to its waiting client having the reply), p50 and p99.

Run: `python -m bench.crowd_bench [--sizes 250 500 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.proc import rss_kib
from tests.helpers import crowd
from tests.stack import Stack, launch_all


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


def run_size(stack: Stack, size: int) -> str:
    pid = stack.gateway.pid
    idle = rss_kib(pid)
    held_rss = []
    stack.control(hold=True)
    try:
        held = asyncio.run(crowd(str(stack.client.base_url), size,
                                 release=lambda: stack.control(hold=False),
                                 while_held=lambda: held_rss.append(rss_kib(pid))))
    finally:
        stack.control(hold=False)
    ok = sum(status == 200 and reply["response"] == f"echo: crowd {n}"
             and events[-1].type == "done"
             for n, (status, reply, events) in enumerate(
                 zip(held.statuses, held.replies, held.streams, strict=True)))
    overhead = [(until - stack.job_record(job_id)["finished_at"]) * 1000
                for job_id, until in zip(held.job_ids, held.waited_until, strict=True)]
    per_client = (held_rss[0] - idle) / (2 * size)
    ready = "200" if set(held.ready) == {200} else ",".join(map(str, held.ready))
    return (f"{2 * size:>7} {ok:>5}/{size:<5} {ready:>6} {per_client:>9.1f} "
            f"{quantile(overhead, 0.5):>8.1f} {quantile(overhead, 0.99):>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            launch_all(Path(tmp), workers=2, WORKER_CONCURRENCY="4") as stack:
        stack.client.post("/chat", json={"message": "warm up"}).raise_for_status()
        print("clients  ok jobs   readyz  KiB/client  wait p50 ms  p99 ms")
        for size in args.sizes:
            print(run_size(stack, size), flush=True)


if __name__ == "__main__":
    main()
