"""The whole stack on loopback: the gateway under uvicorn and Celery worker
processes, beside a Groq-like server, over a real redis-server and S3 server.

Used by the end-to-end tests and by the benchmarks in bench/.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis, RedisCluster

from shared.store.keys import job_key
from tests import servers


@dataclass
class Stack:
    gateway: servers.Server
    workers: list[servers.Server]
    groq: servers.Server
    env: dict[str, str]
    logdir: Path
    client: httpx.Client
    groq_client: httpx.Client
    extra: list[servers.Server] = field(default_factory=list)
    # Its own Redis and S3 servers, when it started them (launch_all); with
    # the state on a Redis Cluster of its own, `redis` is the broker's.
    redis: servers.Server | None = None
    s3: servers.Server | None = None
    redis_cluster: servers.RedisCluster | None = None
    workers_started: int = 0
    # launch_faulty's: the proxy in front of S3, and a second gateway's client.
    s3_proxy: servers.TcpProxy | None = None
    second: httpx.Client | None = None

    def llm_calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.groq_client.get("/_calls").json()
        return calls

    def control(self, **settings: Any) -> None:
        self.groq_client.post("/_control", json=settings).raise_for_status()

    def wait_job(self, job_id: str, timeout: float = 30.0,
                 until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Polls the job until its status is one of `until` (by default: it has
        ended). Tests only; the gateway itself never polls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.client.get(f"/chat/jobs/{job_id}", headers=headers).json()
            if job["status"] in until:
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not reach {until} in {timeout}s")

    def objects(self, thread_id: str) -> dict[str, bytes]:
        """Every S3 object stored under the thread's prefix, read directly."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT_URL"],
                          region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
        bucket, prefix = self.env["S3_BUCKET_NAME"], f"{self.env['S3_PREFIX']}{thread_id}/"
        found = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def store(self) -> Redis | RedisCluster:
        """A client of the stack's Redis, to read or write it directly: a
        cluster client when the stack's state is on a Redis Cluster."""
        url = self.env["REDIS_URL"]
        if self.env.get("REDIS_CLUSTER") == "1":
            return RedisCluster.from_url(url, decode_responses=True)
        return Redis.from_url(url, decode_responses=True)

    def job_record(self, job_id: str) -> dict[str, float]:
        """The job's timestamps, read from Redis directly (for benchmarks)."""
        with self.store() as client:
            raw = client.hgetall(job_key(job_id))
        return {k: float(raw[k]) for k in ("created_at", "started_at", "finished_at")}

    def add_workers(self, count: int) -> list[servers.Server]:
        # Numbered after every worker ever started here, not the ones left: a
        # replacement must not share a stopped worker's name and log file,
        # which tests search for the job a worker ran.
        more = start_workers(self.env, self.logdir, count, first=self.workers_started + 1)
        self.workers += more
        self.workers_started += count
        return more


def stack_env(redis_url: str, s3_endpoint: str, bucket: str, groq_port: int,
              provider: str = "groq") -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET_NAME": bucket,
        "S3_PREFIX": "chat_histories/",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "LLM_PROVIDER": provider,
        "GROQ_API_KEY": "gsk-test-not-a-real-key",
        "GROQ_API_BASE": f"http://127.0.0.1:{groq_port}",
        # A model Groq serves, so LangChain's profile of it applies (text only).
        "GROQ_MODEL": "llama-3.3-70b-versatile",
        "CHAT_WAIT_TIMEOUT": "20",
        "TURN_MAX_RETRIES": "2",
        # High enough that only the tests about the limit ever meet it.
        "RATE_LIMIT_CALLS": "100000",
        # Every test client is one address: only the tests of the limits meet them.
        "MAX_QUEUED_PER_CLIENT": "100000",
        "MAX_WAITS_PER_KEY": "100000",
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
        # Mingle and gossip only slow the start; the workers need neither.
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                "--loglevel=INFO", "-n", f"w{n}@%h", "--without-mingle", "--without-gossip"]
        workers.append(servers.Server(f"worker{n}", argv, None, logdir / f"worker{n}.log",
                                      env).start())
    for worker in workers:
        wait_for_log(worker, " ready.")
    return workers


def start_beat(env: dict[str, str], logdir: Path) -> servers.Server:
    # Its schedule file goes with the logs, not into the working tree.
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
            "--loglevel=INFO", "-s", str(logdir / "celerybeat-schedule")]
    beat = servers.Server("beat", argv, None, logdir / "beat.log", env).start()
    try:
        wait_for_log(beat, "beat: Starting")
    except BaseException:
        beat.stop()
        raise
    return beat


@contextmanager
def launch(redis_url: str, s3_endpoint: str, logdir: Path, workers: int = 2,
           beat: bool = False, **overrides: str) -> Iterator[Stack]:
    logdir.mkdir(parents=True, exist_ok=True)
    groq_port, gateway_port = servers.free_port(), servers.free_port()
    groq = servers.Server("groq", [sys.executable, "-m", "tests.fakes.fake_groq_server",
                                   "--port", str(groq_port)],
                          groq_port, logdir / "groq.log").start()
    env = {**stack_env(redis_url, s3_endpoint, servers.create_bucket(s3_endpoint), groq_port),
           **overrides}
    gateway = servers.Server(
        "gateway", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                    "--port", str(gateway_port), "--no-access-log"],
        gateway_port, logdir / "gateway.log", env).start()
    started = [groq, gateway]
    try:
        stack = Stack(gateway, [], groq, env, logdir,
                      httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=90),
                      httpx.Client(base_url=f"http://127.0.0.1:{groq_port}", timeout=10))
        stack.add_workers(workers)
        if beat:
            stack.extra.append(start_beat(env, logdir))
        yield stack
    finally:
        for server in [*started, *stack.workers, *stack.extra]:
            server.stop()
        stack.client.close()
        stack.groq_client.close()


@contextmanager
def launch_all(workdir: Path, workers: int = 2, cluster: bool = False,
               **overrides: str) -> Iterator[Stack]:
    """Also starts its own redis-server and S3 server (for the benchmarks);
    with `cluster`, the state on a Redis Cluster of three masters of its own,
    and that redis-server the broker's alone."""
    redis = servers.redis_server(workdir / "redis").start()
    s3 = servers.s3_server(workdir / "s3").start()
    state = servers.redis_cluster(workdir / "redis-cluster").start() if cluster else None
    url = f"redis://127.0.0.1:{redis.port}/0"
    if state is not None:
        overrides = {"REDIS_CLUSTER": "1", "CELERY_BROKER_URL": url, **overrides}
        url = state.url
    try:
        with launch(url, f"http://127.0.0.1:{s3.port}", workdir / "stack", workers,
                    **overrides) as stack:
            stack.redis, stack.s3, stack.redis_cluster = redis, s3, state
            yield stack
    finally:
        if state is not None:
            state.stop()
        s3.stop()
        redis.stop()


@contextmanager
def launch_faulty(workdir: Path, s3_endpoint: str, name: str = "faulty",
                  redis_url: str | None = None, **overrides: str) -> Iterator[Stack]:
    """Three workers and two gateways on a persistent Redis of their own (or
    on `redis_url`'s, then not theirs to restart), with S3 behind a proxy a
    test can cut (`stack.s3_proxy`), a short lease and a sweep every second,
    for the tests of crashes and outages."""
    own = None
    if redis_url is None:
        own = servers.redis_server(workdir / f"{name}-redis", persistent=True).start()
        redis_url = f"redis://127.0.0.1:{own.port}/0"
    s3 = servers.TcpProxy(int(s3_endpoint.rsplit(":", 1)[1])).start()
    try:
        with launch(redis_url, f"http://127.0.0.1:{s3.port}",
                    workdir / name, workers=3, THREAD_LEASE_SECONDS="3",
                    RECOVERY_INTERVAL_SECONDS="1", RECOVERY_STALL_SECONDS="3",
                    TURN_MAX_RETRIES="5", **overrides) as stack:
            port = servers.free_port()
            second = servers.Server(
                "gateway2", [sys.executable, "-m", "uvicorn", "api.main:app", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log"],
                port, workdir / name / "gateway2.log", stack.env).start()
            stack.extra += [second]
            stack.redis = own
            stack.s3_proxy = s3
            stack.second = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90)
            try:
                yield stack
            finally:
                stack.second.close()
    finally:
        s3.stop()
        if own is not None:
            own.stop()
