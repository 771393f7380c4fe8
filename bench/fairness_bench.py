"""How long one key's turn waits while another key holds a backlog.

Starts the whole stack on loopback (redis-server, moto's S3 server, one
gateway, two workers, the Groq-like server through ChatGroq) with two API
keys and a global LLM limit of CALLS per PERIOD seconds. Key A queues
BACKLOG turns at once (each on a thread of its own, as many conversations
would); then key B sends single turns one after another, each waiting for its
reply. Prints each of B's waits, and how many of A's turns had finished
meanwhile. With the window shared fairly, B's turn takes the next call slot
that frees (A is held to its half of the window meanwhile), not a place
behind A's backlog; a wait of 20 s is the gateway's own wait timing out.

Run: `python -m bench.fairness_bench [--backlog 200] [--turns 5]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.stack import launch_all

CALLS, PERIOD = 4, 1
KEY_A, KEY_B = "fairness-key-a-0123456789", "fairness-key-b-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    with tempfile.TemporaryDirectory() as tmp, \
            launch_all(Path(tmp), workers=2, API_KEYS=f"{KEY_A},{KEY_B}",
                       RATE_LIMIT_CALLS=str(CALLS), RATE_LIMIT_PERIOD=str(PERIOD),
                       MAX_QUEUED_PER_CLIENT=str(args.backlog)) as stack:
        client = stack.client
        backlog = [client.post("/chat", params={"wait": "false"},
                               json={"message": f"backlog {n}"}, headers=a).json()["job_id"]
                   for n in range(args.backlog)]
        print(f"limit {CALLS} calls / {PERIOD} s; key A queued {len(backlog)} turns")
        print("turn  key B's wait s  A's turns done")
        waits = []
        for n in range(args.turns):
            started = time.monotonic()
            reply = client.post("/chat", json={"message": f"b {n}"}, headers=b, timeout=120)
            waits.append(time.monotonic() - started)
            done = sum(client.get(f"/chat/jobs/{job_id}", headers=a).json()["status"]
                       == "succeeded" for job_id in backlog)
            print(f"{n:>4}  {waits[-1]:>14.2f}  {done:>14}  ({reply.status_code})", flush=True)
        print(f"key B's wait: median {statistics.median(waits):.2f} s, "
              f"max {max(waits):.2f} s (a window: {PERIOD} s)")


if __name__ == "__main__":
    main()
