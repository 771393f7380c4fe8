"""Helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from shared.ids import new_id
from shared.jobs import Job, JobStore
from tests import servers
from tests.sse import SseEvent, parse_lines
from tests.stack import Stack, launch

# Limits high enough that only the tests about them meet them.
ROOMY = 10_000

# The API keys of the keyed stack (tests/e2e/conftest.py), one per use, so
# the tests of one never see another's conversations.
API_KEYS = {"threads": "key-threads", "other": "key-other", "metrics": "key-metrics",
            "page": "key-page"}


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of one of API_KEYS."""
    return {"Authorization": f"Bearer {API_KEYS[name]}"}


def a_job(thread_id: str | None = None, message: str = "hi", client: str = "") -> Job:
    return Job(job_id=new_id(), thread_id=thread_id or new_id(), message=message,
               language="English", client=client)


async def accept(jobs: JobStore, job: Job) -> Job:
    """Records the job as the gateway does, with limits the test does not meet."""
    return await jobs.create(job, ROOMY, ROOMY)


@dataclass
class Crowd:
    """What each client of a crowd got: its wait's status, body and the time it
    came, and the events of its stream."""

    job_ids: list[str]
    ready: list[int]  # /readyz while every client was held
    statuses: list[int]
    replies: list[dict[str, Any]]
    waited_until: list[float]
    streams: list[list[SseEvent]]


async def crowd(base_url: str, count: int, release: Callable[[], None],
                while_held: Callable[[], None] = lambda: None) -> Crowd:
    """`count` jobs, each with one client waiting on POST /chat and one reading
    its stream, all on the gateway at once.

    The caller holds the LLM's answers first. Once every stream is open this
    calls `while_held`, probes /readyz, and calls `release`, which must let
    the answers go. aiohttp rather than httpx: the clients' own CPU time must
    not be what the figures measure.
    """
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as client:
        bodies = [{"message": f"crowd {n}"} for n in range(count)]
        keys = [{"Idempotency-Key": f"crowd-{n}-{new_id()}"} for n in range(count)]
        accepting = asyncio.Semaphore(50)  # a crowd arrives over a moment, not in one burst

        async def create(n: int) -> str:
            async with accepting, client.post("/chat", params={"wait": "false"},
                                              json=bodies[n], headers=keys[n]) as reply:
                assert reply.status == 202, await reply.text()
                job_id: str = (await reply.json())["job_id"]
                return job_id

        job_ids = await asyncio.gather(*(create(n) for n in range(count)))
        opened = asyncio.Event()
        open_streams = 0
        waited_until = [0.0] * count

        async def wait(n: int) -> tuple[int, dict[str, Any]]:
            # The same key and body: the client waits on the job made above.
            async with client.post("/chat", params={"timeout": "240"}, json=bodies[n],
                                   headers=keys[n]) as reply:
                body: dict[str, Any] = await reply.json()
                waited_until[n] = time.time()
                return reply.status, body

        async def stream(job_id: str) -> list[SseEvent]:
            nonlocal open_streams
            async with client.get(f"/chat/jobs/{job_id}/events") as reply:
                assert reply.status == 200
                open_streams += 1
                if open_streams == count:
                    opened.set()
                lines = [line.decode().rstrip("\r\n") async for line in reply.content]
            return list(parse_lines(lines))

        waits = [asyncio.create_task(wait(n)) for n in range(count)]
        streams = [asyncio.create_task(stream(j)) for j in job_ids]
        async with asyncio.timeout(120):
            await opened.wait()
        while_held()
        ready = []
        for _ in range(5):
            async with client.get("/readyz") as probe:
                ready.append(probe.status)
        release()
        answered = await asyncio.gather(*waits)
        return Crowd(job_ids, ready, [a[0] for a in answered], [a[1] for a in answered],
                     waited_until, await asyncio.gather(*streams))


@contextmanager
def stack_of_its_own(s3_endpoint: str, workdir: Path, workers: int,
                     **overrides: str) -> Iterator[Stack]:
    """A stack on a redis-server of its own, so no other stack's workers take
    its jobs and its Redis can be inspected alone."""
    redis = servers.redis_server(workdir / "redis").start()
    try:
        with launch(f"redis://127.0.0.1:{redis.port}/0", s3_endpoint, workdir / "stack",
                    workers, **overrides) as stack:
            yield stack
    finally:
        redis.stop()
