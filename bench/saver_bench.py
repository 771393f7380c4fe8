"""Cost of one chat turn per checkpoint saver, as a conversation grows.

For conversations of 10, 100 and 1,000 turns, runs real turns of a one-node
chat graph (``add_messages``, the offline echo model, ``durability="exit"``)
and prints, per turn: storage requests (S3 requests, or SQL statements), bytes
written (S3: bodies PUT; SQL: bytes of the statements' parameters) and the
time of ``aget_tuple`` + ``aput``. Savers: ``AsyncS3Saver`` on moto's S3
server (cold: a new saver per turn, as turns land on random workers; warm:
one saver), LangGraph's ``AsyncSqliteSaver`` (a file) and
``AsyncPostgresSaver`` (loopback; skipped if none answers).

Turns 1-10, 91-100 and 961-1000 go through the graph. In between, the S3
conversation grows by ``aput`` of graph-shaped checkpoints (so its compaction
cycle is the real one) and the SQL ones by a single ``aput`` (their cost
depends only on the current length). Run: ``python -m bench.saver_bench``;
``--update-doc`` writes the table into bench/SAVER.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aioboto3
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, copy_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from shared.checkpoint import AsyncS3Saver
from shared.checkpoint._s3 import CLIENT_CONFIG
from tests import servers
from worker.llm import EchoChatModel

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "saver_bench"
DOC = Path(__file__).with_name("SAVER.md")
TOPICS = ["the weather in Lisbon", "sourdough starters", "Rust lifetimes", "tide tables",
          "the history of the bicycle", "how to price a used car", "jazz chord voicings"]


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    model = EchoChatModel()

    async def reply(state: ChatState) -> dict[str, list[AnyMessage]]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(ChatState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def question(n: int) -> str:
    return f"Turn {n}: could you tell me something about {TOPICS[n % len(TOPICS)]}, please?"


@dataclass
class Meter:
    """What one saver call sent to storage."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    active: bool = False

    def take(self) -> tuple[int, int, float]:
        taken = (self.requests, self.bytes, self.seconds)
        self.requests, self.bytes, self.seconds = 0, 0, 0.0
        return taken


METER = Meter()


def timed(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        METER.active = True
        try:
            return await method(*args, **kwargs)
        finally:
            METER.active = False
            METER.seconds += time.perf_counter() - started

    return wrapper


def meter_saver(saver: Any) -> Any:
    # Instance attributes survive the shallow copy LangGraph makes (with_allowlist).
    saver.aget_tuple = timed(saver.aget_tuple)
    saver.aput = timed(saver.aput)
    return saver


def _param_bytes(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if hasattr(value, "obj"):  # psycopg's Jsonb
        return len(json.dumps(value.obj, default=str).encode())
    return 8


@contextmanager
def metered_sql() -> Iterator[None]:
    """Count the statements and parameter bytes psycopg and aiosqlite send."""
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, many: bool) -> None:
        original = getattr(owner, name)

        def counting(self: Any, sql: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            if METER.active:
                rows = list(params or []) if many else [params or ()]
                if many:
                    params = rows
                METER.requests += len(rows)
                METER.bytes += sum(_param_bytes(p) for row in rows for p in row)
            return original(self, sql, params, *args, **kwargs)

        patched.append((owner, name, original))
        setattr(owner, name, counting)

    try:
        import aiosqlite

        wrap(aiosqlite.Connection, "execute", False)
        wrap(aiosqlite.Connection, "executemany", True)
        wrap(aiosqlite.Cursor, "execute", False)
        wrap(aiosqlite.Cursor, "executemany", True)
    except ImportError:
        pass
    try:
        import psycopg

        wrap(psycopg.AsyncCursor, "execute", False)
        wrap(psycopg.AsyncCursor, "executemany", True)
    except ImportError:
        pass
    try:
        yield
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


def meter_s3(client: Any) -> None:
    def on_send(**_: Any) -> None:
        if METER.active:
            METER.requests += 1

    def on_put(params: dict[str, Any], **_: Any) -> None:
        if METER.active:
            METER.bytes += len(params.get("Body") or b"")

    client.meta.events.register("before-send.s3", on_send)
    client.meta.events.register("provide-client-params.s3.PutObject", on_put)


@dataclass
class Window:
    """The turns measured around one conversation length."""

    size: int
    turns: list[tuple[int, int, float]] = field(default_factory=list)
    history: tuple[int, int, float] = (0, 0, 0.0)


@dataclass
class Subject:
    """One saver under test: how to get a saver for a turn, and how to grow fast."""

    name: str
    saver_for_turn: Callable[[], Any]
    grow: Callable[[Any, dict[str, Any], int, int], Awaitable[None]]
    windows: list[Window] = field(default_factory=list)


async def real_turns(subject: Subject, config: dict[str, Any], first: int, last: int,
                     window: Window) -> None:
    for n in range(first, last + 1):
        graph = chat_graph(subject.saver_for_turn())
        METER.take()
        await graph.ainvoke({"messages": [HumanMessage(question(n))]}, config,
                            durability="exit")
        window.turns.append(METER.take())
    fresh = subject.saver_for_turn()
    await fresh.aget_tuple(config)
    window.history = METER.take()


def shaped_like(latest: CheckpointTuple, saver: Any, n: int, messages: list[Any]) -> tuple[
        dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A checkpoint shaped like the graph's: every version the turn bumped, bumped again."""
    checkpoint = copy_checkpoint(latest.checkpoint)
    checkpoint["id"] = str(uuid6(clock_seq=n))
    checkpoint["ts"] = datetime.now(UTC).isoformat()
    checkpoint["channel_values"] = {**checkpoint["channel_values"], "messages": messages}
    bumped = {c: saver.get_next_version(v, None) for c, v in
              checkpoint["channel_versions"].items()}
    checkpoint["channel_versions"] = bumped
    checkpoint["versions_seen"] = {
        node: {c: bumped.get(c, v) for c, v in seen.items()}
        for node, seen in checkpoint["versions_seen"].items()
    }
    metadata = {**latest.metadata, "step": latest.metadata.get("step", 0) + 1,
                "run_id": str(uuid.uuid4())}
    return dict(checkpoint), metadata, bumped


def grown(messages: list[Any], n: int) -> list[Any]:
    echo = f"[echo model: no LLM configured] {question(n)}"
    return [*messages, HumanMessage(question(n), id=str(uuid.uuid4())),
            AIMessage(echo, id=str(uuid.uuid4()))]


async def grow_turn_by_turn(saver: Any, config: dict[str, Any], first: int, last: int) -> None:
    """Add turns first..last one ``aput`` each, as the graph would have."""
    latest = await saver.aget_tuple(config)
    messages = list(latest.checkpoint["channel_values"]["messages"])
    for n in range(first, last + 1):
        messages = grown(messages, n)
        checkpoint, metadata, versions = shaped_like(latest, saver, n, messages)
        stored = await saver.aput(latest.config, checkpoint, metadata, versions)
        latest = CheckpointTuple(stored, checkpoint, metadata)  # type: ignore[arg-type]


async def grow_in_one_put(saver: Any, config: dict[str, Any], first: int, last: int) -> None:
    """Add turns first..last in one ``aput`` (for savers whose turn cost only depends on
    the current length of the conversation)."""
    latest = await saver.aget_tuple(config)
    messages = list(latest.checkpoint["channel_values"]["messages"])
    for n in range(first, last + 1):
        messages = grown(messages, n)
    checkpoint, metadata, versions = shaped_like(latest, saver, last, messages)
    await saver.aput(latest.config, checkpoint, metadata, versions)


async def measure(subject: Subject, sizes: list[int], last_window: int) -> None:
    config: dict[str, Any] = {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex[:8]}"}}
    done = 0
    for size in sizes:
        width = min(size, last_window if size == sizes[-1] else 10)
        start = size - width + 1
        if start - 1 > done:
            # Not metered: METER.active stays off outside the graph's calls.
            await subject.grow(subject.saver_for_turn(), config, done + 1, start - 1)
        window = Window(size)
        await real_turns(subject, config, start, size, window)
        subject.windows.append(window)
        done = size
        print(f"  {subject.name}: {size} turns done", flush=True)


@asynccontextmanager
async def s3_subjects(workdir: Path, keep_last: int) -> AsyncIterator[list[Subject]]:
    server = servers.s3_server(workdir / "s3").start()
    try:
        endpoint = f"http://127.0.0.1:{server.port}"
        bucket = servers.create_bucket(endpoint)
        async with aioboto3.Session().client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", config=CLIENT_CONFIG
        ) as client:
            meter_s3(client)
            warm = meter_saver(AsyncS3Saver(client, bucket, "warm/", keep_last=keep_last))

            def cold() -> Any:
                return meter_saver(AsyncS3Saver(client, bucket, "cold/", keep_last=keep_last))

            yield [
                Subject(f"S3 cold (keep_last={keep_last})", cold, grow_turn_by_turn),
                Subject(f"S3 warm (keep_last={keep_last})", lambda: warm, grow_turn_by_turn),
            ]
    finally:
        server.stop()


@asynccontextmanager
async def sqlite_subject(workdir: Path) -> AsyncIterator[list[Subject]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(workdir / "bench.sqlite")) as saver:
        await saver.setup()
        metered = meter_saver(saver)
        yield [Subject("SQLite (file)", lambda: metered, grow_in_one_put)]


@asynccontextmanager
async def postgres_subject() -> AsyncIterator[list[Subject]]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        print("  PostgreSQL skipped: langgraph-checkpoint-postgres is not installed")
        yield []
        return
    try:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True,
                                                         connect_timeout=3) as admin:
            await admin.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            await admin.execute(f"CREATE SCHEMA {PG_SCHEMA}")
    except psycopg.OperationalError as exc:
        print(f"  PostgreSQL skipped: nothing answers at {PG_URL} ({exc})")
        yield []
        return
    try:
        url = f"{PG_URL}?options=-csearch_path%3D{PG_SCHEMA}"
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            metered = meter_saver(saver)
            yield [Subject("PostgreSQL (loopback)", lambda: metered, grow_in_one_put)]
    finally:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")


def _fmt_bytes(value: float) -> str:
    return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value:.0f} B"


def table(subjects: list[Subject]) -> str:
    lines = [
        "| saver | turns | requests/turn (max) | bytes written/turn: mean (median, max) "
        "| aget_tuple+aput ms: mean (p50) | latest read: requests, ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for subject in subjects:
        for window in subject.windows:
            requests = [r for r, _, _ in window.turns]
            written = [b for _, b, _ in window.turns]
            ms = [s * 1000 for _, _, s in window.turns]
            lines.append(
                f"| {subject.name} | {window.size} "
                f"| {statistics.mean(requests):.2f} ({max(requests)}) "
                f"| {_fmt_bytes(statistics.mean(written))} "
                f"({_fmt_bytes(statistics.median(written))}, {_fmt_bytes(max(written))}) "
                f"| {statistics.mean(ms):.1f} ({statistics.median(ms):.1f}) "
                f"| {window.history[0]}, {window.history[2] * 1000:.1f} |"
            )
    return "\n".join(lines)


def update_doc(text: str) -> None:
    start, end = "<!-- saver-bench:start -->", "<!-- saver-bench:end -->"
    doc = DOC.read_text()
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{text}\n{end}{tail}")


async def run(sizes: list[int], last_window: int, keep_last: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        subjects: list[Subject] = []
        async with AsyncExitStack() as stack:
            subjects += await stack.enter_async_context(s3_subjects(workdir, keep_last))
            subjects += await stack.enter_async_context(sqlite_subject(workdir))
            subjects += await stack.enter_async_context(postgres_subject())
            with metered_sql():
                for subject in subjects:
                    await measure(subject, sizes, last_window)
    return table(subjects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--last-window", type=int, default=40,
                        help="turns measured at the largest size (covers a compaction cycle)")
    parser.add_argument("--keep-last", type=int, default=20)
    parser.add_argument("--update-doc", action="store_true", help="write the table into SAVER.md")
    args = parser.parse_args()
    started = time.monotonic()
    text = asyncio.run(run(sorted(args.sizes), args.last_window, args.keep_last))
    print()
    print(text)
    print(f"\n(ran in {time.monotonic() - started:.0f} s)")
    if args.update_doc:
        update_doc(text)


if __name__ == "__main__":
    main()
