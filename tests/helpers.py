"""Helpers shared by several test modules: jobs and crowds of clients for the gateway,
savers of both variants, a chat graph and a request counter for the saver. Nothing
here is a fake: every client and saver talks to a real server."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiohttp
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import _messages_delta_reducer, add_messages
from langgraph.types import interrupt
from redis.asyncio import Redis

from api.chat_runs import chat_job
from api.main import create_app
from shared.checkpoint import AsyncS3Saver, RetryPolicy, S3Saver
from shared.ids import new_id, new_job_id
from shared.settings import Settings
from shared.store.job import Job
from shared.store.jobs import JobStore
from tests import servers
from tests.sse import SseEvent, parse_lines
from tests.stack import Stack, launch

# Limits high enough that only the tests about them meet them.
ROOMY = 10_000

# The API keys of the keyed stack (tests/e2e/conftest.py), one per use, so
# the tests of one never see another's conversations.
API_KEYS = {"threads": "key-threads-0123456789", "other": "key-other-0123456789",
            "metrics": "key-metrics-0123456789", "page": "key-page-0123456789"}


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of one of API_KEYS."""
    return {"Authorization": f"Bearer {API_KEYS[name]}"}


def a_job(thread_id: str | None = None, message: str = "hi", client: str = "") -> Job:
    """A chat job (a run of the chat graph), as POST /chat makes it."""
    thread_id = thread_id or new_id()
    return chat_job("chat", new_job_id(thread_id), thread_id, message, "English", "", client)


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


@asynccontextmanager
async def empty_database(redis_url: str, number: int) -> AsyncIterator[Redis]:
    """Database `number` of the session's redis-server, emptied: a test's own,
    so no stack's workers or other test sees what it writes."""
    client = Redis.from_url(redis_url.removesuffix("/0") + f"/{number}", decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


USER_GRAPHS = Path(__file__).parent / "data" / "user_graphs"


def user_project(folder: Path) -> Path:
    """`folder`, holding a copy of the test user's graphs and their
    langgraph.json, as a project of their own outside this repository."""
    for name in ("agent.py", "langgraph.json"):
        shutil.copy(USER_GRAPHS / name, folder / name)
    return folder


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


PREFIX = "chat_histories/"
VARIANTS = ["async", "sync"]
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)


class ThreadedS3Saver(S3Saver):
    """The sync saver behind the async API, one thread hop per call."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_transcript(self, thread_id: str, *, before: int | None = None,
                              limit: int = 100, checkpoint_ns: str = "") -> Any:
        return await asyncio.to_thread(
            lambda: self.get_transcript(
                thread_id, before=before, limit=limit, checkpoint_ns=checkpoint_ns)
        )

    async def asetup(self) -> None:
        await asyncio.to_thread(self.setup)


@asynccontextmanager
async def open_saver(variant: str, endpoint: str, bucket: str, prefix: str = PREFIX,
                     **options: Any) -> AsyncIterator[Any]:
    """An open saver of either variant; both answer the async API."""
    url = f"s3://{bucket}/{prefix}"
    if variant == "async":
        async with AsyncS3Saver.from_conn_string(
            url, endpoint_url=endpoint, region_name="us-east-1", **options
        ) as saver:
            yield saver
    else:
        with ThreadedS3Saver.from_conn_string(
            url, endpoint_url=endpoint, region_name="us-east-1", **options
        ) as sync_saver:
            yield sync_saver


async def setup(saver: Any) -> None:
    await (saver.asetup() if isinstance(saver, ThreadedS3Saver) else saver.setup())


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class DeltaState(TypedDict):
    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer,
                                                      snapshot_frequency=3)]


async def echo(state: State) -> dict[str, list[AnyMessage]]:
    return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}


async def delta_echo(state: DeltaState) -> dict[str, list[AnyMessage]]:
    return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}


async def approve(state: State) -> dict[str, list[AnyMessage]]:
    answer = interrupt("approve?")
    return {"messages": [AIMessage(content=f"approved: {answer}")]}


def chat_graph(saver: Any, node: Any = echo, schema: Any = State) -> Any:
    builder = StateGraph(schema)
    builder.add_node("reply", node)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


class RequestCounter:
    """Counts the HTTP requests a client sends, by S3 operation, and the bytes PUT.

    A context manager: the client is shared by the module's tests.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.ops: Counter[str] = Counter()
        self.put_bytes = 0

    def __enter__(self) -> RequestCounter:
        self.client.meta.events.register("before-send.s3", self._on_send)
        self.client.meta.events.register("provide-client-params.s3.PutObject", self._on_put)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister("before-send.s3", self._on_send)
        self.client.meta.events.unregister("provide-client-params.s3.PutObject", self._on_put)

    def _on_send(self, event_name: str, **_: Any) -> None:
        self.ops[event_name.rsplit(".", 1)[-1]] += 1

    def _on_put(self, params: dict[str, Any], **_: Any) -> None:
        self.put_bytes += len(params.get("Body") or b"")

    def take(self) -> Counter[str]:
        ops, self.ops = self.ops, Counter()
        return ops


def thread(thread_id: str, ns: str = "") -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


def new_checkpoint(**values: Any) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    return checkpoint


async def all_objects(sync_client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    def read() -> dict[str, bytes]:
        listed = sync_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {
            o["Key"][len(prefix):]: sync_client.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"].read()
            for o in listed
        }

    return await asyncio.to_thread(read)




async def read_transcript(saver: Any, thread_id: str, limit: int = 100) -> list[Any]:
    """Every message of a thread's transcript, walking its pages from the newest."""
    pages: list[list[Any]] = []
    before = None
    while True:
        page = await saver.aget_transcript(thread_id, before=before, limit=limit)
        assert page is not None
        pages.append([entry.value for entry in page.entries])
        if page.start == 0:
            return [value for values in reversed(pages) for value in values]
        assert page.start < (before if before is not None else float("inf"))
        before = page.start


def app_client(**env: object) -> TestClient:
    """The gateway in-process, with Redis and S3 "down" (ports where nothing
    listens) unless `env` says where they are."""
    down = {"REDIS_URL": f"redis://127.0.0.1:{servers.free_port()}/0",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{servers.free_port()}"}
    settings = Settings(_env_file=None, **{**down, **env})  # type: ignore[arg-type]
    return TestClient(create_app(settings), raise_server_exceptions=False)
