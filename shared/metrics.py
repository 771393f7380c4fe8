"""Prometheus metrics, counted in every process and read as one scrape.

The gateway and each worker are separate processes, so each
keeps its own counts. prometheus_client's multiprocess mode has every
process write them to memory-mapped files in PROMETHEUS_MULTIPROC_DIR, and
the gateway's GET /metrics adds up the files of all of them (api/routes/metrics.py).
The directory must be shared by the gateway and the workers: one host, or a
volume mounted into every container. Without the variable each process
counts only for itself, and /metrics shows the gateway's own counts.

Counters and histograms add up across processes, and a process that is
gone still counts for what it did. The one gauge, turns running, counts
live processes only ("livesum"). What is a level of the whole system
rather than of a process (the queue's depth) is read from Redis at scrape
time.

On Kubernetes no disk is shared between pods: each worker process serves
its own metrics (WORKER_METRICS_PORT, worker/metrics_server.py) and the
gateway's /metrics its own, and Prometheus adds the pods up.
"""

from __future__ import annotations

import os
import socket

from prometheus_client import Counter, Gauge, Histogram, values

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def process_id() -> str:
    """This process's name among the files of the directory. prometheus_client
    names them by pid; containers sharing the directory each number their
    processes from 1, so the host name joins in."""
    return f"{socket.gethostname()}-{os.getpid()}"


if os.environ.get(MULTIPROC_DIR_ENV):
    values.ValueClass = values.MultiProcessValue(process_id)  # type: ignore[no-untyped-call]

# Turns last from a fraction of a second (echo) to minutes (long replies, retries).
_TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter("chat_http_requests", "HTTP requests answered by the gateway.",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("chat_http_request_duration_seconds",
                         "Time from a request's arrival to its response's first byte.",
                         ["method", "route"], buckets=_FAST_BUCKETS)

TURNS = Counter("chat_turns", "Jobs ended, by outcome.", ["outcome"])
TURN_DURATION = Histogram("chat_turn_duration_seconds",
                          "Time from a job's last start to its end, by outcome.",
                          ["outcome"], buckets=_TURN_BUCKETS)
QUEUE_WAIT = Histogram("chat_queue_wait_seconds",
                       "Time from a job's acceptance to its first start on a worker.",
                       buckets=_TURN_BUCKETS)
FIRST_TOKEN = Histogram("chat_first_token_seconds",
                        "Time from a turn's start to the first token of its reply.",
                        buckets=_TURN_BUCKETS)

TURNS_RUNNING = Gauge("chat_turns_running",
                      "Turn tasks a worker process is running now (its turns in flight).",
                      multiprocess_mode="livesum")

LLM_CALLS = Counter("chat_llm_calls", "Calls started to the LLM.")
LLM_TOKENS = Counter("chat_llm_tokens", "Reply tokens streamed from the LLM "
                     "(one per chunk the provider sent).")
LLM_RATE_LIMITED = Counter("chat_llm_rate_limited", "Calls the provider answered with 429.")
LLM_LIMIT_WAIT = Counter("chat_llm_limit_wait_seconds",
                         "Seconds turns were put back by the global LLM rate limit "
                         "or a provider's Retry-After.")

S3_REQUESTS = Counter("chat_s3_requests", "Requests made to S3, by operation.", ["operation"])
S3_ERRORS = Counter("chat_s3_errors", "S3 requests that failed (an error status or no "
                    "answer), by operation.", ["operation"])

CLEANUP_PASSES = Counter("chat_cleanup_passes", "Cleanup passes run to their end.")
CLEANUP_DELETED = Counter("chat_cleanup_threads_deleted",
                          "Conversations cleanup deleted for being idle.")
