"""The whole stack on loopback: redis-server, moto's S3 server, a Groq-like server,
the gateway under uvicorn and two Celery worker processes, each on a free port.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import servers

WORKERS = 2


@dataclass
class Stack:
    gateway: servers.Server
    workers: list[servers.Server]
    groq: servers.Server
    env: dict[str, str]
    client: httpx.Client
    groq_client: httpx.Client

    def llm_calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.groq_client.get("/_calls").json()
        return calls

    def control(self, **settings: Any) -> None:
        self.groq_client.post("/_control", json=settings).raise_for_status()

    def wait_job(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Polls the job until it ends (tests only; the gateway itself never polls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.client.get(f"/chat/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not end in {timeout}s")


def stack_env(redis_url: str, s3_endpoint: str, bucket: str, groq_port: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET_NAME": bucket,
        "S3_PREFIX": "chat_histories/",
        "LLM_PROVIDER": "groq",
        "GROQ_API_KEY": "gsk-test-not-a-real-key",
        "GROQ_API_BASE": f"http://127.0.0.1:{groq_port}",
        "GROQ_MODEL": "test-model",
        "CHAT_WAIT_TIMEOUT": "20",
        "TURN_MAX_RETRIES": "2",
        "WORKER_CONCURRENCY": "2",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


def wait_for_log(server: servers.Server, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log():
            return
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log()[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"{server.name} did not log {text!r}:\n{server.log()[-3000:]}")


def start_workers(env: dict[str, str], logdir: Path, count: int,
                  first: int = 1) -> list[servers.Server]:
    workers = []
    for n in range(first, first + count):
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                "--loglevel=INFO", "-n", f"w{n}@%h", "--without-mingle", "--without-gossip"]
        workers.append(servers.Server(f"worker{n}", argv, None, logdir / f"worker{n}.log",
                                      env).start())
    for worker in workers:
        wait_for_log(worker, " ready.")
    return workers


@pytest.fixture(scope="session")
def stack(redis_url: str, s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    logdir = workdir / "stack"
    logdir.mkdir(exist_ok=True)
    groq_port, gateway_port = servers.free_port(), servers.free_port()
    groq = servers.Server("groq", [sys.executable, "-m", "tests.fakes.fake_groq_server",
                                   "--port", str(groq_port)],
                          groq_port, logdir / "groq.log").start()
    env = stack_env(redis_url, s3_endpoint, servers.create_bucket(s3_endpoint), groq_port)
    gateway = servers.Server(
        "gateway", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                    "--port", str(gateway_port)],
        gateway_port, logdir / "gateway.log", env).start()
    workers = start_workers(env, logdir, WORKERS)
    client = httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=60)
    groq_client = httpx.Client(base_url=f"http://127.0.0.1:{groq_port}", timeout=10)
    try:
        yield Stack(gateway, workers, groq, env, client, groq_client)
    finally:
        client.close()
        groq_client.close()
        for server in [gateway, *workers, groq]:
            server.stop()
        if os.environ.get("CI"):
            for server in [gateway, *workers]:
                tail = server.log()[-4000:]
                if "Traceback" in tail:
                    print(f"--- {server.name} log tail ---\n{tail}")


@pytest.fixture(autouse=True)
def _fresh_llm(stack: Stack) -> Iterator[None]:
    """Each test starts with the Groq-like server's faults and records cleared."""
    stack.groq_client.post("/_control/reset").raise_for_status()
    stack.groq_client.delete("/_calls").raise_for_status()
    yield
