"""Streaming figures: time to the first token, and tokens/s with 20 streams.

Starts the whole stack on loopback (redis-server, moto's S3 server, the
gateway, one worker with 20 prefork children, the Groq-like server driven
through the real ChatGroq client), then:
1. 100 sequential `POST /chat?stream=true` turns with the LLM answering at
   once: time from the POST to the first `token` event (p50/p99);
2. 20 concurrent streams of 300-token replies, 5 ms between tokens: tokens
   per second delivered to the clients.
Run: `python -m bench.stream_bench`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.sse import read_events, reply_of
from tests.stack import Stack, launch_all


def first_token_ms(stack: Stack, n: int) -> float:
    started = time.perf_counter()
    with stack.client.stream("POST", "/chat", params={"stream": "true"},
                             json={"message": f"first token {n}"}) as reply:
        for event in read_events(reply):
            if event.type == "token":
                first = time.perf_counter() - started
            if event.type in ("done", "error", "cancelled"):
                assert event.type == "done", event
    return first * 1000


def one_stream(stack: Stack, n: int) -> int:
    with stack.client.stream("POST", "/chat", params={"stream": "true"},
                             json={"message": f"long {n}"}) as reply:
        events = list(read_events(reply))
    assert events[-1].type == "done", events[-1]
    return len(reply_of(events).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, launch_all(
            Path(tmp), workers=1, WORKER_CONCURRENCY=str(args.streams)) as stack:
        stack.control(reply_tokens=20, token_delay=0)
        for n in range(args.streams):  # warm every child: first calls pay lazy imports
            first_token_ms(stack, n)
        times = sorted(first_token_ms(stack, n) for n in range(args.turns))
        pct = statistics.quantiles(times, n=100)
        print(f"POST -> first token, {args.turns} sequential turns, LLM answering at once:")
        print(f"  p50 {statistics.median(times):.1f} ms   p99 {pct[98]:.1f} ms")

        stack.control(reply_tokens=args.tokens, token_delay=0.005)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.streams) as pool:
            counts = list(pool.map(lambda n: one_stream(stack, n), range(args.streams)))
        elapsed = time.perf_counter() - started
        print(f"{args.streams} concurrent streams of {args.tokens} tokens, 5 ms apart:")
        print(f"  {sum(counts)} tokens in {elapsed:.2f} s = {sum(counts) / elapsed:.0f} tokens/s "
              f"(one stream alone would take {args.tokens * 0.005:.1f} s)")


if __name__ == "__main__":
    main()
