"""One event loop per worker process, running many turns at once.

A turn is mostly waiting on the LLM, so a worker process runs up to
WORKER_CONCURRENCY of them together: Celery's threads pool hands each task to
a thread, and each thread hands its coroutine to the process's one event loop
(`Runtime.run`), which runs in a thread of its own. The async clients (httpx
inside the LLM client, aioboto3, redis.asyncio) are bound to that loop and
built once with it: building them per task costs tens of milliseconds (two
SSL contexts per LLM client), and one pool of connections per process is what
keeps them alive between turns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from shared.checkpoint import AsyncS3Saver
from shared.graphs import GraphRegistry, load_registry
from shared.legacy_threads import LegacyThreads
from shared.redis_client import learn_nodes, state_redis
from shared.scoped_saver import ScopedSaver
from shared.settings import Settings, get_settings
from shared.storage import open_saver
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox
from shared.store.jobs import JobStore
from worker.cancels import CancelWatch
from worker.deferred import DeferredSaver
from worker.ratelimit import LlmRateLimit

T = TypeVar("T")


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    jobs: JobStore
    saver: AsyncS3Saver
    deferred: DeferredSaver  # the saver, holding a run's writes
    checkpointer: ScopedSaver  # the graphs': `deferred`, by the ids clients know
    graphs: GraphRegistry
    inbox: Inbox
    limiter: LlmRateLimit
    cancels: CancelWatch


async def open_resources(settings: Settings, stack: AsyncExitStack) -> Resources:
    redis = state_redis(settings)
    stack.push_async_callback(redis.aclose)
    await learn_nodes(redis)
    saver = await stack.enter_async_context(open_saver(settings))
    jobs = JobStore(redis, settings.JOB_TTL_SECONDS)
    limiter = LlmRateLimit(redis, settings.RATE_LIMIT_CALLS,
                           settings.RATE_LIMIT_PERIOD)
    graphs = load_registry(settings.LANGGRAPH_CONFIG, settings.CHAT_GRAPH_ID)
    cancels = CancelWatch(redis, jobs)
    cancels.start()
    stack.push_async_callback(cancels.stop)
    deferred = DeferredSaver(saver)
    # A turn holds its thread's lease: a move needs none of its own.
    legacy = LegacyThreads(saver, Conversations(redis))
    return Resources(settings, redis, jobs, saver, deferred,
                     ScopedSaver(deferred, legacy.adopt), graphs, Inbox(redis, jobs), limiter,
                     cancels)


class Runtime:
    """The process's event loop, in a thread of its own, and the resources on it."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="turns-loop", daemon=True)
        self._thread.start()
        self._stack = AsyncExitStack()
        try:
            self.resources = self.run(open_resources(settings, self._stack))
        except BaseException:
            self._stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs `coro` on the loop and waits for its result, from any thread.

        `timeout`: cancel it after that many seconds (Celery's time limits
        need processes of their own, so a thread's task bounds itself here).
        """
        future = asyncio.run_coroutine_threadsafe(_within(coro, timeout), self._loop)
        try:
            return future.result()
        except BaseException:
            # The calling thread is leaving (shutdown): the turn stops too, and
            # its `finally` blocks (lease release, stream close) still run.
            future.cancel()
            raise

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Runs `callback` on the loop's thread soon, and returns at once."""
        self._loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        global _runtime
        try:
            self.run(self._stack.aclose(), timeout=10)
        finally:
            self._stop()
            if _runtime is self:
                _runtime = None

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


async def _within(coro: Coroutine[Any, Any, T], seconds: float | None) -> T:
    async with asyncio.timeout(seconds):
        return await coro


_runtime: Runtime | None = None
_made = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, made on first use; the threads that ask for it
    while it is being made wait for it."""
    global _runtime
    with _made:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def close_runtime() -> None:
    with _made:
        if _runtime is not None:
            _runtime.close()
