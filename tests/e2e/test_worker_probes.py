"""A real worker process serving its own /metrics (WORKER_METRICS_PORT) and
keeping its heartbeat file fresh (WORKER_HEARTBEAT_FILE), as its pod on
Kubernetes is scraped and probed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import servers
from tests.stack import Stack, launch

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def probed(s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    """One worker, with its metrics port and heartbeat file, on a redis-server of
    its own (so every turn its gateway accepts is run by that worker)."""
    redis = servers.redis_server(workdir / "probed-redis").start()
    try:
        with launch(f"redis://127.0.0.1:{redis.port}/0", s3_endpoint, workdir / "probed",
                    workers=1, WORKER_METRICS_PORT=str(servers.free_port()),
                    WORKER_HEARTBEAT_FILE=str(workdir / "probed-heartbeat")) as running:
            yield running
    finally:
        redis.stop()


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout}s")
        time.sleep(0.05)


def worker_samples(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = httpx.get(f"http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics", timeout=5)
    assert reply.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text)
            for s in family.samples}


def probe(stack: Stack, max_age: float) -> subprocess.CompletedProcess[str]:
    """The liveness probe of the manifests, as the kubelet runs it."""
    return subprocess.run([sys.executable, "-m", "worker.heartbeat",
                           stack.env["WORKER_HEARTBEAT_FILE"], str(max_age)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_worker_serves_its_own_turns_on_its_port(probed: Stack) -> None:
    succeeded = ("chat_turns_total", frozenset({("outcome", "succeeded")}))
    before = worker_samples(probed)
    assert before[("chat_turns_running", frozenset())] == 0
    for n in range(3):
        reply = probed.client.post("/chat", json={"message": f"count me {n}"})
        assert reply.status_code == 200, reply.text
    # The job ends before the task that ran it returns: the counts follow at once.
    until(lambda: worker_samples(probed).get(succeeded, 0) - before.get(succeeded, 0) == 3,
          10, "3 turns counted on the worker's own port")
    after = worker_samples(probed)
    assert after[("chat_turns_running", frozenset())] == 0
    assert after[("chat_llm_calls_total", frozenset())] >= 3
    # The gateway's counts are its own: no request was answered by the worker.
    assert not any(name == "chat_http_requests_total" for name, _ in after)


def test_the_heartbeat_stays_fresh_and_goes_stale_when_the_worker_hangs(
        probed: Stack) -> None:
    until(lambda: probe(probed, 5).returncode == 0, 15, "a fresh heartbeat")
    [worker] = probed.workers
    worker.signal(signal.SIGSTOP)
    try:
        until(lambda: probe(probed, 3).returncode == 1, 15, "a stale heartbeat")
        assert "worker heartbeat" in probe(probed, 3).stderr
    finally:
        worker.signal(signal.SIGCONT)
    until(lambda: probe(probed, 3).returncode == 0, 15, "fresh again once it runs")


def test_a_taken_metrics_port_stops_the_worker_with_one_line(probed: Stack) -> None:
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--loglevel=INFO", "-n", "second@%h", "--without-mingle", "--without-gossip"]
    second = servers.Server("second-worker", argv, None, probed.logdir / "second.log",
                            probed.env).start()
    try:
        assert second.proc is not None
        assert second.proc.wait(60) == 2
    finally:
        second.kill()
    port = probed.env["WORKER_METRICS_PORT"]
    assert f"WORKER_METRICS_PORT: cannot serve metrics on port {port}" in second.log()
