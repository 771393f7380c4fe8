"""What a turn costs, and how many turns run at once: one script, every figure.

Starts the whole stack on loopback for each case (redis-server, moto's S3
served with keep-alive, the gateway, Celery workers, the Groq-like server
through ChatGroq or the offline echo model) and prints, per case: turns/s,
p50/p99 of the client's wait, CPU ms per turn of the gateway, the workers
(their whole process trees), the S3 server and Redis, Redis commands per turn
(`INFO commandstats`, commands run inside scripts included, idle polling
included) and S3 requests per turn.

Cases:
- sequential: 100 waited `POST /chat` turns, one after the other, on one
  thread, echo model;
- throughput: 20 clients x 20 turns each, every client on its own thread,
  echo model;
- stream: POST to the first `token` event (100 sequential turns, the LLM
  answering at once); then 20 concurrent streams of 300 tokens, 5 ms apart;
- scaling: 1, 2 and 4 worker processes of 8 turns each, a 200 ms LLM, 16
  clients per worker process;
- many at once: 200 chats sent together on new threads to ONE worker
  process, a 2 s LLM: when the last was answered, and the worker's memory.

Run: `python -m bench.perf_bench [--cases sequential throughput ...]
[--broker rabbitmq | --state cluster] [--api-key KEY]`; with `--broker rabbitmq` every case's
Celery broker is a rabbitmq-server started for the run (its CPU is counted as
`broker`), and Redis holds the state alone; with `--api-key` auth is on, so a
thread is its key's (stored as `<owner>.<id>`); with `--state cluster` the
state is on a Redis Cluster of three masters started for each case, and the
broker a redis-server apart (`redis` then counts all four, CPU and commands).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench.proc import cpu_seconds, rss_kib, tree
from shared.settings import Settings
from tests import servers
from tests.sse import read_events
from tests.stack import Stack, launch_all

# The RabbitMQ every case's stack uses as its broker (--broker rabbitmq), else None.
BROKER: servers.Server | None = None
# The key every client sends, with auth on (`--api-key`); None: auth off.
API_KEY: str | None = None
# The state on a Redis Cluster of three masters (`--state cluster`).
CLUSTER = False


@contextmanager
def rig(workdir: Path, workers: int, **env: str) -> Iterator[Stack]:
    """The stack on its own servers, each worker process running the product's
    default of turns at once unless `env` says otherwise (the tests' stack
    runs 2)."""
    default = str(Settings.model_fields["WORKER_CONCURRENCY"].default)
    if API_KEY:
        env = {"API_KEYS": API_KEY, **env}
    with launch_all(workdir, workers, cluster=CLUSTER,
                    **{"WORKER_CONCURRENCY": default, **env}) as stack:
        yield stack


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}


def base_url(stack: Stack) -> str:
    return str(stack.client.base_url)


class Meter:
    """Counts what a stretch of load cost: CPU, Redis commands, S3 requests."""

    def __init__(self, stack: Stack) -> None:
        assert stack.redis is not None and stack.s3 is not None  # launch_all's
        self.s3_server = stack.s3
        # Every Redis: the one, or a cluster's nodes and the broker's.
        redis_servers = [stack.redis, *(stack.redis_cluster.nodes if stack.redis_cluster
                                        else [])]
        self.redises = [redis.Redis(port=server.port, decode_responses=True)
                        for server in redis_servers]
        self.groups = {"gateway": lambda: tree(stack.gateway.pid),
                       "workers": lambda: [p for w in stack.workers for p in tree(w.pid)],
                       "s3": lambda: [self.s3_server.pid],
                       "redis": lambda: [server.pid for server in redis_servers]}
        if BROKER is not None:
            broker = BROKER
            self.groups["broker"] = lambda: tree(broker.pid)

    def s3_requests(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.s3_server.port}/_requests") as reply:
            return int(reply.read())

    def __enter__(self) -> Meter:
        for client in self.redises:
            client.config_resetstat()
        self.s3_before = self.s3_requests()
        self.started = time.perf_counter()
        self.cpu_before = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cpu = {name: cpu_seconds(pids()) - self.cpu_before[name]
                    for name, pids in self.groups.items()}
        self.s3 = self.s3_requests() - self.s3_before
        self.commands: Counter[str] = Counter()
        for client in self.redises:
            stats: dict[str, Any] = client.info("commandstats")
            self.commands.update({name.removeprefix("cmdstat_"): int(value["calls"])
                                  for name, value in stats.items()
                                  if name not in ("cmdstat_config|resetstat", "cmdstat_info")})
            client.close()

    def report(self, turns: int) -> str:
        cpu = "  ".join(f"{name} {seconds * 1000 / turns:.1f}"
                        for name, seconds in self.cpu.items())
        top = sorted(self.commands.items(), key=lambda kv: -kv[1])[:8]
        top_text = ", ".join(f"{name} {calls / turns:.1f}" for name, calls in top)
        busy = sum(self.cpu.values()) / self.elapsed
        return (f"  CPU ms/turn: {cpu} (these processes kept {busy:.2f} of "
                f"{os.cpu_count()} cores busy)\n"
                f"  Redis commands/turn: {sum(self.commands.values()) / turns:.1f} ({top_text})\n"
                f"  S3 requests/turn: {self.s3 / turns:.2f}")


def percentiles(ms: list[float]) -> str:
    if len(ms) < 2:
        return f"p50 {ms[0]:.1f} ms"
    cuts = statistics.quantiles(ms, n=100)
    return f"p50 {statistics.median(ms):.1f} ms  p99 {cuts[98]:.1f} ms  max {max(ms):.1f} ms"


async def chats(base_url: str, clients: int, turns: int, tag: str,
                new_threads: bool = False) -> tuple[list[float], float]:
    """`clients` clients at once, each sending `turns` waited turns in a row;
    the wait of every turn (ms) and the seconds it all took."""
    waits: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers(),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def client(c: int) -> None:
            thread = None
            for t in range(turns):
                sent = time.perf_counter()
                async with session.post("/chat", json={"message": f"{tag} {c} {t}",
                                                       "thread_id": thread}) as reply:
                    body = await reply.json()
                    assert reply.status == 200, (reply.status, body)
                waits.append((time.perf_counter() - sent) * 1000)
                thread = None if new_threads else body["thread_id"]

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        return waits, time.perf_counter() - started


def warm(stack: Stack, clients: int) -> None:
    asyncio.run(chats(base_url(stack), clients, 2, "warm"))


def case_sequential(tmp: Path) -> None:
    with rig(tmp / "sequential", 1, LLM_PROVIDER="echo") as r:
        warm(r, 4)
        with Meter(r) as meter:
            waits, _ = asyncio.run(chats(base_url(r), 1, 100, "seq"))
        print(f"sequential: 100 turns on one thread, echo: {percentiles(waits)}")
        print(meter.report(100))


def case_throughput(tmp: Path, workers: int) -> None:
    with rig(tmp / "throughput", workers, LLM_PROVIDER="echo") as r:
        warm(r, 20)
        with Meter(r) as meter:
            waits, elapsed = asyncio.run(chats(base_url(r), 20, 20, "load"))
        print(f"throughput: 20 clients x 20 turns, echo, {workers} worker process(es): "
              f"{400 / elapsed:.1f} turns/s, {percentiles(waits)}")
        print(meter.report(400))


def first_token_ms(stack: Stack, n: int) -> float:
    started = time.perf_counter()
    first = None
    with stack.client.stream("POST", "/chat", params={"stream": "true"}, headers=headers(),
                             json={"message": f"first token {n}"}) as reply:
        for event in read_events(reply):
            if event.type == "token" and first is None:
                first = time.perf_counter() - started
            if event.type in ("done", "error", "cancelled"):
                assert event.type == "done", event
    assert first is not None
    return first * 1000


async def streams(base_url: str, count: int) -> int:
    """`count` streams at once; the tokens (events) they delivered."""
    async with aiohttp.ClientSession(base_url, headers=headers()) as session:
        async def one(n: int) -> int:
            tokens = 0
            async with session.post("/chat", params={"stream": "true"},
                                    json={"message": f"long {n}"}) as reply:
                async for line in reply.content:
                    if line.startswith(b"event: token"):
                        tokens += 1
            return tokens
        return sum(await asyncio.gather(*(one(n) for n in range(count))))


def case_stream(tmp: Path) -> None:
    with rig(tmp / "stream", 1) as r:
        r.control(reply_tokens=20, token_delay=0)
        warm(r, 4)
        with Meter(r) as meter:
            times = [first_token_ms(r, n) for n in range(100)]
        print(f"stream: POST -> first token, 100 sequential turns: {percentiles(times)}")
        print(meter.report(100))
        r.control(reply_tokens=300, token_delay=0.005)
        started = time.perf_counter()
        events = asyncio.run(streams(base_url(r), 20))
        elapsed = time.perf_counter() - started
        print(f"stream: 20 streams x 300 tokens 5 ms apart: {events} token events in "
              f"{elapsed:.2f} s; {20 * 300 / elapsed:.0f} tokens/s "
              f"(one stream alone: {300 * 0.005:.1f} s)")


def case_scaling(tmp: Path) -> None:
    rates = {}
    for workers in (1, 2, 4):
        with rig(tmp / f"scaling{workers}", workers, WORKER_CONCURRENCY="8") as r:
            r.control(delay=0.2)
            warm(r, 8 * workers)
            with Meter(r) as meter:
                waits, elapsed = asyncio.run(chats(base_url(r), 16 * workers, 10, "scale"))
            rates[workers] = 160 * workers / elapsed
            print(f"scaling: {workers} worker process(es) x 8 turns, 200 ms LLM, "
                  f"{16 * workers} clients: {rates[workers]:.1f} turns/s "
                  f"({rates[workers] / (rates[1] * workers):.2f}x linear), {percentiles(waits)}")
            print(meter.report(160 * workers))


def case_many(tmp: Path, count: int, concurrency: int) -> None:
    with rig(tmp / "many", 1, WORKER_CONCURRENCY=str(concurrency),
             REDIS_MAX_CONNECTIONS="100", S3_MAX_CONNECTIONS="100") as r:
        warm(r, 8)
        r.control(delay=2.0)
        worker = r.workers[0]
        with Meter(r) as meter:
            waits, _ = asyncio.run(chats(base_url(r), count, 1, "many", new_threads=True))
            memory = sum(rss_kib(pid) for pid in tree(worker.pid)) / 1024
        processes = len(tree(worker.pid))
        print(f"many at once: {count} chats on new threads, 2 s LLM, one worker process "
              f"({concurrency} turns at once): last answered {max(waits) / 1000:.2f} s after "
              f"sending, {percentiles(waits)}; worker tree {memory:.0f} MiB "
              f"in {processes} process(es)")
        print(meter.report(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = ["sequential", "throughput", "stream", "scaling", "many"]
    parser.add_argument("--cases", nargs="+", choices=cases, default=cases)
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes for the throughput case")
    parser.add_argument("--many", type=int, default=200, help="chats in the many-at-once case")
    parser.add_argument("--concurrency", type=int, default=200,
                        help="WORKER_CONCURRENCY in the many-at-once case")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis",
                        help="Celery's broker: the state's Redis, or a RabbitMQ")
    parser.add_argument("--state", choices=["redis", "cluster"], default="redis",
                        help="the state on one Redis, or on a Redis Cluster of three "
                             "masters (the broker then a redis-server apart)")
    parser.add_argument("--api-key", help="run the stacks with auth on (API_KEYS=this key), "
                                          "every client sending it")
    args = parser.parse_args()
    global API_KEY, CLUSTER
    API_KEY, CLUSTER = args.api_key, args.state == "cluster"
    print(f"{os.cpu_count()} CPUs; figures per turn; CPU is process time over the case; "
          f"broker: {args.broker}; state: {args.state}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.broker == "rabbitmq":
            global BROKER
            BROKER = servers.rabbitmq_server(Path(tmp) / "rabbitmq").start(timeout=60)
            # Every stack's processes inherit it (tests/servers.py passes os.environ on).
            os.environ["CELERY_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:{BROKER.port}//"
        try:
            run_cases(Path(tmp), args)
        finally:
            if BROKER is not None:
                BROKER.stop()


def run_cases(tmp: Path, args: argparse.Namespace) -> None:
    for case in args.cases:
        if case == "sequential":
            case_sequential(tmp)
        elif case == "throughput":
            case_throughput(tmp, args.workers)
        elif case == "stream":
            case_stream(tmp)
        elif case == "scaling":
            case_scaling(tmp)
        else:
            case_many(tmp, args.many, args.concurrency)


if __name__ == "__main__":
    main()
