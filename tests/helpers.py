"""Helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.ids import new_id
from shared.jobs import Job, JobStore
from tests import servers
from tests.sse import SseEvent, parse_lines
from tests.stack import Stack, launch

# Limits high enough that only the tests about them meet them.
ROOMY = 10_000


def a_job(thread_id: str | None = None, message: str = "hi", client: str = "") -> Job:
    return Job(job_id=new_id(), thread_id=thread_id or new_id(), message=message,
               language="English", client=client)


async def accept(jobs: JobStore, job: Job) -> Job:
    """Records the job as the gateway does, with limits the test does not meet."""
    return await jobs.create(job, ROOMY, ROOMY)


@dataclass
class Crowd:
    """What each client of a crowd got: its wait's reply and when it came, and
    the events of its stream."""

    job_ids: list[str]
    waits: list[httpx.Response]
    waited_until: list[float]
    streams: list[list[SseEvent]]


async def crowd(base_url: str, count: int,
                while_held: Callable[[httpx.AsyncClient], Awaitable[None]]) -> Crowd:
    """`count` jobs, each with one client waiting on POST /chat and one reading
    its stream, all on the gateway at once.

    The caller holds the LLM's answers first; `while_held` runs once every
    stream is open, and must release them.
    """
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        bodies = [{"message": f"crowd {n}"} for n in range(count)]
        keys = [{"Idempotency-Key": f"crowd-{n}-{new_id()}"} for n in range(count)]
        created = await asyncio.gather(*(
            client.post("/chat", params={"wait": "false"}, json=body, headers=key)
            for body, key in zip(bodies, keys, strict=True)))
        assert {r.status_code for r in created} == {202}, created[0].text
        job_ids = [r.json()["job_id"] for r in created]
        opened = asyncio.Event()
        open_streams = 0
        waited_until = [0.0] * count

        async def wait(n: int) -> httpx.Response:
            # The same key and body: the client waits on the job made above.
            reply = await client.post("/chat", params={"timeout": "240"}, json=bodies[n],
                                      headers=keys[n])
            waited_until[n] = time.time()
            return reply

        async def stream(job_id: str) -> list[SseEvent]:
            nonlocal open_streams
            async with client.stream("GET", f"/chat/jobs/{job_id}/events") as reply:
                assert reply.status_code == 200
                open_streams += 1
                if open_streams == count:
                    opened.set()
                lines = [line async for line in reply.aiter_lines()]
            return list(parse_lines(lines))

        waits = [asyncio.create_task(wait(n)) for n in range(count)]
        streams = [asyncio.create_task(stream(j)) for j in job_ids]
        async with asyncio.timeout(120):
            await opened.wait()
        await while_held(client)
        return Crowd(job_ids, await asyncio.gather(*waits), waited_until,
                     await asyncio.gather(*streams))


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
