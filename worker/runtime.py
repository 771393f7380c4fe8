"""One event loop per worker process, kept for its whole life.

Async clients (httpx inside the LLM client, aioboto3, redis.asyncio) are bound
to the loop that made them, and building them per task costs tens of
milliseconds (two SSL contexts per LLM client). So each Celery child process holds one
`asyncio.Runner` with the LLM client, the compiled graph, and the Redis and
S3 clients, and every task runs its coroutine on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langgraph.graph.state import CompiledStateGraph
from redis.asyncio import Redis

from shared import metrics
from shared.checkpoint import AsyncS3Saver
from shared.jobs import JobStore
from shared.redis_client import make_redis
from shared.settings import Settings, get_settings
from shared.storage import open_saver
from worker.deferred import DeferredSaver
from worker.graph import build_graph
from worker.llm import build_llm
from worker.ratelimit import LlmRateLimit
from worker.threadqueue import ThreadQueue

T = TypeVar("T")


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    jobs: JobStore
    saver: AsyncS3Saver
    checkpointer: DeferredSaver  # the graph's: the saver, holding a turn's writes
    graph: CompiledStateGraph[Any, Any, Any, Any]
    threads: ThreadQueue
    limiter: LlmRateLimit


async def open_resources(settings: Settings, stack: AsyncExitStack) -> Resources:
    redis = make_redis(settings.REDIS_URL, settings.REDIS_MAX_CONNECTIONS)
    stack.push_async_callback(redis.aclose)
    saver = await stack.enter_async_context(open_saver(settings))
    jobs = JobStore(redis, settings.JOB_TTL_SECONDS)
    limiter = LlmRateLimit(redis, settings.RATE_LIMIT_CALLS,
                           settings.RATE_LIMIT_PERIOD)

    async def before_call() -> None:
        await limiter.acquire()  # raises when the call may not start
        metrics.LLM_CALLS.inc()

    graph = build_graph(build_llm(settings), DeferredSaver(saver), settings.CONTEXT_MAX_TOKENS,
                        before_call=before_call,
                        window_messages=settings.CONTEXT_WINDOW_MESSAGES)
    # Compiling may derive a saver with the state's types allowed: use that one.
    checkpointer = cast(DeferredSaver, graph.checkpointer)
    return Resources(settings, redis, jobs, saver, checkpointer, graph,
                     ThreadQueue(redis, jobs), limiter)


class Runtime:
    """The process's event loop and the resources that live on it."""

    def __init__(self, settings: Settings) -> None:
        self._runner = asyncio.Runner()
        self._stack = AsyncExitStack()
        self.resources = self._runner.run(open_resources(settings, self._stack))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._runner.run(coro)
        except BaseException as exc:
            # SIGTERM or a hard limit arrives as an exception here: close the loop
            # so the turn's `finally` blocks (lock release, stream close) still run.
            if not isinstance(exc, Exception):
                self.close()
            raise

    def close(self) -> None:
        global _runtime
        try:
            self._runner.run(self._stack.aclose())
        finally:
            self._runner.close()
            if _runtime is self:
                _runtime = None


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, made on first use (the prefork child's init, or solo)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def close_runtime() -> None:
    if _runtime is not None:
        _runtime.close()
