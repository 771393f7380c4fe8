"""Cost of one chat turn, and of one history page, as a conversation grows.

Runs real turns of the product's chat graph (``worker.graph``, the offline
echo model, ``durability="exit"``) with messages of about 1 KB, and prints,
per turn, averaged over the last 100 turns before each length (or all of
them when fewer): storage requests, bytes written, bytes read, and the CPU
time of the saver's calls (``aget_tuple`` + ``aput``, in this process:
serialisation, encryption, the S3 client); then the cost of one history
page at that length.

Savers: ``AsyncS3Saver`` on moto's S3 server, plain and encrypted, with the
product's settings (a window of ``CONTEXT_WINDOW_MESSAGES`` messages in the
state, ``keep_last=20``, a transcript); a new saver every turn, as when
turns land on random workers. Beside it, LangGraph's ``AsyncSqliteSaver``
(a file) and ``AsyncPostgresSaver`` (loopback; skipped when none answers)
on the same messages without a window, since they serve history from the
state: they go as far as they get in ``--sql-seconds``. For SQL, requests
are statements and bytes written are the statements' parameters (a lower
bound); a history page is ``aget_tuple`` of the latest checkpoint.

Run: ``python -m bench.saver_bench`` (a few minutes); ``--update-doc`` writes
the table into bench/SAVER.md and README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3

from graphs.chat import build_graph
from graphs.llm import EchoChatModel
from shared.checkpoint import AsyncS3Saver
from shared.checkpoint._s3 import CLIENT_CONFIG
from shared.conversation import human_message
from shared.settings import Settings
from tests import servers

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "saver_bench"
DOCS = [Path(__file__).with_name("SAVER.md"), Path(__file__).parent.parent / "README.md"]
MARKERS = ("<!-- saver-bench:start -->", "<!-- saver-bench:end -->")
WINDOW = Settings.model_fields["CONTEXT_WINDOW_MESSAGES"].default
KEEP_LAST = 20
MEASURED = 100  # turns averaged before each length
VOCABULARY = ("the of and to in is that for it as was with be by on not he this are or from "
              "at which but have an they you were her she there been one all we their has "
              "would when tide harbour sourdough lifetime borrow chord voicing bicycle "
              "derailleur mortgage weather forecast pressure humidity kernel scheduler latency")
WORDS = VOCABULARY.split()


def question(n: int) -> str:
    """About 1 KB of text, different every turn (so deflate gets what real text gives)."""
    rng = random.Random(n)
    text = f"Turn {n}:"
    while len(text) < 1000:
        text += " " + rng.choice(WORDS)
    return text + "?"


@dataclass
class Meter:
    """What the saver's calls cost: requests, bytes each way, CPU seconds."""

    requests: int = 0
    written: int = 0
    read: int = 0
    cpu: float = 0.0
    active: bool = False

    def take(self) -> tuple[int, int, int, float]:
        taken = (self.requests, self.written, self.read, self.cpu)
        self.requests, self.written, self.read, self.cpu = 0, 0, 0, 0.0
        return taken


METER = Meter()


def metered(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        METER.active = True
        try:
            return await method(*args, **kwargs)
        finally:
            METER.active = False
            METER.cpu += time.process_time() - started

    return wrapper


def meter_saver(saver: Any) -> Any:
    # Instance attributes survive the shallow copy LangGraph makes (with_allowlist).
    saver.aget_tuple = metered(saver.aget_tuple)
    saver.aput = metered(saver.aput)
    return saver


def meter_s3(client: Any) -> None:
    def on_send(**_: Any) -> None:
        if METER.active:
            METER.requests += 1

    def on_put(params: dict[str, Any], **_: Any) -> None:
        if METER.active:
            METER.written += len(params.get("Body") or b"")

    def on_get(parsed: dict[str, Any], **_: Any) -> None:
        if METER.active:
            METER.read += int(parsed.get("ContentLength") or 0)

    client.meta.events.register("before-send.s3", on_send)
    client.meta.events.register("provide-client-params.s3.PutObject", on_put)
    client.meta.events.register("after-call.s3.GetObject", on_get)


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
                METER.written += sum(_param_bytes(p) for row in rows for p in row)
            return original(self, sql, params, *args, **kwargs)

        patched.append((owner, name, original))
        setattr(owner, name, counting)

    import aiosqlite

    wrap(aiosqlite.Connection, "execute", False)
    wrap(aiosqlite.Connection, "executemany", True)
    wrap(aiosqlite.Cursor, "execute", False)
    wrap(aiosqlite.Cursor, "executemany", True)
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


@dataclass
class Subject:
    """One saver under test."""

    name: str
    saver_for_turn: Callable[[], Any]
    window: int | None
    page: Callable[[Any, str, int], Awaitable[Any]]
    turns: list[tuple[int, int, int, float]] = field(default_factory=list)
    pages: dict[int, tuple[int, int, int, float]] = field(default_factory=dict)


async def s3_page(saver: Any, thread_id: str, turns: int) -> Any:
    """An older page of 100 messages: the head, and one sealed segment once there is one."""
    return await metered(saver.aget_transcript)(thread_id, before=turns, limit=100)


async def sql_page(saver: Any, thread_id: str, turns: int) -> Any:
    return await saver.aget_tuple({"configurable": {"thread_id": thread_id}})


async def measure(subject: Subject, sizes: list[int], deadline: float | None) -> None:
    thread_id = f"bench-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
    gc.collect()
    gc.freeze()
    for n in range(1, sizes[-1] + 1):
        graph = build_graph(EchoChatModel(), subject.saver_for_turn(), 6000,
                            window_messages=subject.window)
        # Collect now, so that no collection of earlier turns' garbage lands in this one
        # (cheap: what was loaded before the first turn is frozen out of collections).
        gc.collect()
        METER.take()
        await graph.ainvoke(
            {"messages": [human_message(f"job-{n}", question(n), time.time())]}, config,
            durability="exit")
        subject.turns.append(METER.take())
        if n in sizes:
            await subject.page(subject.saver_for_turn(), thread_id, n)
            subject.pages[n] = METER.take()
            print(f"  {subject.name}: {n} turns", flush=True)
        if deadline is not None and time.monotonic() > deadline:
            print(f"  {subject.name}: stopped at {n} turns (time budget)", flush=True)
            return


@asynccontextmanager
async def s3_subjects(workdir: Path) -> AsyncIterator[list[Subject]]:
    server = servers.s3_server(workdir / "s3").start()
    try:
        endpoint = f"http://127.0.0.1:{server.port}"
        bucket = servers.create_bucket(endpoint)
        async with aioboto3.Session().client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", config=CLIENT_CONFIG
        ) as client:
            meter_s3(client)
            subjects = []
            for name, key in (("S3", None), ("S3 encrypted", bytes(range(32)))):
                def cold(key: bytes | None = key, prefix: str = f"{name}/") -> Any:
                    return meter_saver(AsyncS3Saver(
                        client, bucket, prefix.replace(" ", "-"), keep_last=KEEP_LAST,
                        encryption_key=key, transcript="messages"))

                subjects.append(Subject(name, cold, WINDOW, s3_page))
            yield subjects
    finally:
        server.stop()


@asynccontextmanager
async def sqlite_subject(workdir: Path) -> AsyncIterator[list[Subject]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(workdir / "bench.sqlite")) as saver:
        await saver.setup()
        metered_saver = meter_saver(saver)
        yield [Subject("SQLite (file)", lambda: metered_saver, None, metered(sql_page))]


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
            metered_saver = meter_saver(saver)
            yield [Subject("PostgreSQL (loopback)", lambda: metered_saver, None,
                           metered(sql_page))]
    finally:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")


def _kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


def table(subjects: list[Subject], sizes: list[int]) -> str:
    lines = [
        f"| saver | turns | requests/turn | written/turn | read/turn | saver CPU ms/turn "
        f"| history page ({MEASURED} messages): requests, read, CPU ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for subject in subjects:
        for size in sizes:
            if size not in subject.pages:
                continue
            window = subject.turns[max(0, size - MEASURED):size]
            requests, written, read, cpu = (statistics.mean(column) for column in zip(*window,
                                                                                     strict=True))
            page = subject.pages[size]
            sql = subject.name.startswith(("SQLite", "PostgreSQL"))
            lines.append(
                f"| {subject.name} | {size} | {requests:.2f} (max {max(t[0] for t in window)}) "
                f"| {_kib(written)} | {'-' if sql else _kib(read)} | {cpu * 1000:.1f} "
                f"| {page[0]}, {'-' if sql else _kib(page[2])}, {page[3] * 1000:.1f} |"
            )
    return "\n".join(lines)


def flatness(subjects: list[Subject], sizes: list[int]) -> str:
    """The largest over the smallest per-turn figure from 200 turns on, per saver."""
    lines = []
    for subject in subjects:
        windows = [subject.turns[size - MEASURED:size] for size in sizes
                   if size >= 200 and size in subject.pages]
        if len(windows) < 2:
            continue
        ratios = []
        for column, label in ((1, "written"), (2, "read"), (3, "CPU")):
            means = [statistics.mean(t[column] for t in w) for w in windows]
            ratio = f"{max(means) / min(means):.2f}x" if min(means) > 0 else "-"
            ratios.append(f"{label} {ratio}")
        lines.append(f"{subject.name}, max/min from 200 turns on: " + ", ".join(ratios))
    return "\n".join(lines)


def update_docs(text: str) -> None:
    start, end = MARKERS
    for doc in DOCS:
        content = doc.read_text()
        head, rest = content.split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")


async def run(sizes: list[int], sql_seconds: float, with_sql: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        subjects: list[Subject] = []
        async with AsyncExitStack() as stack:
            s3 = await stack.enter_async_context(s3_subjects(workdir))
            sql = []
            if with_sql:
                sql += await stack.enter_async_context(sqlite_subject(workdir))
                sql += await stack.enter_async_context(postgres_subject())
            subjects = s3 + sql
            for subject in s3:
                await measure(subject, sizes, None)
            with metered_sql():
                for subject in sql:
                    await measure(subject, sizes, time.monotonic() + sql_seconds)
    return f"{table(subjects, sizes)}\n\n{flatness(subjects, sizes)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 200, 1000, 2000])
    parser.add_argument("--sql-seconds", type=float, default=120,
                        help="time budget of each SQL saver")
    parser.add_argument("--no-sql", action="store_true", help="the S3 saver only")
    parser.add_argument("--update-doc", action="store_true",
                        help="write the table into bench/SAVER.md and README.md")
    args = parser.parse_args()
    started = time.monotonic()
    text = asyncio.run(run(sorted(args.sizes), args.sql_seconds, not args.no_sql))
    print()
    print(text)
    print(f"\n(ran in {time.monotonic() - started:.0f} s)")
    if args.update_doc:
        update_docs(text)


if __name__ == "__main__":
    main()
