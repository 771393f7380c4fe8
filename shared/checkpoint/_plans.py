"""Every operation of the saver as a plan (see ``_requests``), shared by both savers.

Request budget of a chat turn (``get_tuple`` of the latest, then ``put``):

- read: GET head (answered 304 if this saver holds it already), plus a GET
  of its base when the head is a delta over one: at most 2;
- write: one conditional PUT of the head; or, when the head read was
  self-contained and has grown past ``spill_over``, a PUT of a base slot and
  of a small head (see ``_writes``). A turn is at most 3 requests, whatever
  its length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from . import _legacy
from ._cache import Loaded
from ._layout import checkpoint_config, config_target, thread_of, validate_id
from ._requests import (
    NOT_MODIFIED,
    Delete,
    Emit,
    Found,
    Get,
    HeadBucket,
    ListKeys,
    Locked,
    Plan,
)
from ._state import State, decode, merge, retain, union
from ._writes import write
from .base import BaseS3Saver, merge_writes
from .errors import CheckpointConflict, S3SaverError, S3Unavailable

_READ_ATTEMPTS = 4
_WRITE_ATTEMPTS = 5


def ping(saver: BaseS3Saver) -> Plan[None]:
    """One HEAD of the bucket."""
    yield HeadBucket()


def setup(saver: BaseS3Saver) -> Plan[None]:
    """One HEAD of the bucket, with errors that name it."""
    bucket = saver.bucket
    try:
        yield HeadBucket()
    except S3Unavailable as exc:
        raise S3Unavailable(f"S3 is unreachable for bucket {bucket!r}: {exc}") from exc
    except S3SaverError as exc:
        raise S3SaverError(f"S3 bucket {bucket!r} is missing or not accessible: {exc}") from exc


def load(saver: BaseS3Saver, thread_id: str, ns: str) -> Plan[Loaded | None]:
    """Read a namespace: its head, and its base if the head is a delta.

    Revalidates what the cache holds (a 304 costs no body), and reuses a
    cached base while the head names the same (slot, ETag).
    """
    head_key = saver.keys.head(thread_id, ns)
    for _ in range(_READ_ATTEMPTS):
        cached = saver.cache.get(thread_id, ns)
        found = yield Get(head_key, if_none_match=cached.etag if cached else None)
        if found is NOT_MODIFIED and cached is not None:
            return cached
        if not isinstance(found, Found):
            saver.cache.mark_absent(thread_id, ns)
            return None
        if _legacy.is_legacy(found.body):
            upgraded = yield from _legacy.load(saver, thread_id, ns, found)
            saver.cache.put(thread_id, ns, upgraded)
            return upgraded
        head = decode(found.body, "head")
        base, base_size = None, 0
        if head.base is not None:
            if cached is not None and cached.base is not None and cached.head.base == head.base:
                base, base_size = cached.base, cached.base_size
            else:
                slot, etag = head.base
                try:
                    got = yield Get(saver.keys.base(thread_id, ns, slot), if_match=etag)
                except CheckpointConflict:
                    continue  # the slot was reused after we read the head: read again
                if not isinstance(got, Found):
                    continue  # deleted under us (delete_thread): read again
                base, base_size = decode(got.body, "base"), len(got.body)
        loaded = Loaded(found.etag, head, len(found.body), base, base_size, merge(head, base))
        saver.cache.put(thread_id, ns, loaded)
        return loaded
    raise S3SaverError(f"head of thread {thread_id!r} (ns {ns!r}) kept changing under reads")


def get_tuple(saver: BaseS3Saver, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
    """The checkpoint a config names, or the latest of its namespace."""
    thread_id, ns, checkpoint_id = config_target(config)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    if loaded is None:
        return None
    state: State = loaded.state
    record = state.records.get(checkpoint_id or state.latest_id() or "")
    return saver._load_tuple(thread_id, ns, state, record) if record else None


def list_checkpoints(
    saver: BaseS3Saver,
    config: RunnableConfig | None,
    *,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Plan[None]:
    """Emit matching checkpoints, newest first within each thread.

    A thread's namespaces are read (1-2 GETs each), then only the checkpoints
    returned are decoded; a LIST finds namespaces when the config names none.
    """
    if limit is not None and limit <= 0:
        return
    before_id = (before or {}).get("configurable", {}).get("checkpoint_id")
    wanted_id: str | None = None
    if config is None:
        threads = yield from _namespaces(saver, saver.keys.prefix)
    else:
        thread_id, ns, wanted_id = config_target(config)
        if config.get("configurable", {}).get("checkpoint_ns") is not None:
            threads = {thread_id: [ns]}
        else:
            threads = yield from _namespaces(saver, saver.keys.thread(thread_id))
    remaining = limit
    for thread_id, namespaces in threads.items():
        found: list[tuple[str, str, State]] = []
        for ns in namespaces:
            loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
            if loaded is not None:
                found += [
                    (rid, ns, loaded.state)
                    for rid in loaded.state.records
                    if (wanted_id is None or rid == wanted_id)
                    and (not before_id or rid < before_id)
                ]
        for rid, ns, state in sorted(found, key=lambda f: f[0], reverse=True):
            record = state.records[rid]
            if not saver._matches(record, filter):
                continue
            yield Emit(saver._load_tuple(thread_id, ns, state, record))
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return


def put(
    saver: BaseS3Saver,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> Plan[RunnableConfig]:
    """Store a checkpoint; it becomes the latest if its id is the highest."""
    thread_id, ns, parent_id = config_target(config)
    checkpoint_id = validate_id(checkpoint["id"], "checkpoint_id")
    record = saver._dump_record(config, checkpoint, metadata, parent_id)

    def locked() -> Plan[None]:
        loaded = saver.cache.get(thread_id, ns)
        if loaded is None and not saver.cache.is_absent(thread_id, ns):
            loaded = yield from load(saver, thread_id, ns)
            latest = loaded.state.latest_id() if loaded else None
            # A writer that never saw the thread may only build on its latest.
            if latest is not None and latest not in (parent_id, checkpoint_id):
                raise CheckpointConflict(_moved(thread_id, ns))
        state = loaded.state.copy() if loaded else State()
        state.records[checkpoint_id] = record
        saver._store_values(state, record, checkpoint["channel_values"])
        if saver.keep_last is not None:
            state = retain(state, saver.keep_last)
        try:
            yield from write(saver, thread_id, ns, loaded, state)
        except CheckpointConflict as exc:
            saver.cache.forget(thread_id, ns)
            raise CheckpointConflict(_moved(thread_id, ns)) from exc

    yield Locked(thread_id, ns, locked())
    return checkpoint_config(thread_id, ns, checkpoint_id)


def put_writes(
    saver: BaseS3Saver,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> Plan[None]:
    """Store a task's writes against a checkpoint (which may not be stored yet)."""
    thread_id, ns, checkpoint_id = config_target(config)
    if checkpoint_id is None:
        raise ValueError("put_writes needs config['configurable']['checkpoint_id']")
    new = saver._dump_writes(writes, task_id, task_path)

    def locked() -> Plan[None]:
        for _ in range(_WRITE_ATTEMPTS):
            loaded = saver.cache.get(thread_id, ns)
            if loaded is None and not saver.cache.is_absent(thread_id, ns):
                loaded = yield from load(saver, thread_id, ns)
            state = loaded.state if loaded else State()
            merged = merge_writes(state.writes.get(checkpoint_id, ()), new)
            if merged is None:
                return
            state = state.copy()
            state.writes[checkpoint_id] = tuple(merged)
            try:
                yield from write(saver, thread_id, ns, loaded, state)
                return
            except CheckpointConflict:
                # Writes to a checkpoint do not depend on the head: merge again.
                saver.cache.forget(thread_id, ns)
        raise CheckpointConflict(f"thread {thread_id!r} (ns {ns!r}) kept changing; gave up")

    yield Locked(thread_id, ns, locked())


def delete_thread(saver: BaseS3Saver, thread_id: str) -> Plan[None]:
    """Delete every object of a thread (one LIST, then batched deletes)."""
    thread_id = thread_of(thread_id)
    keys = yield ListKeys(saver.keys.thread(thread_id))
    # Heads first, so readers stop finding the thread before its bases go.
    keys.sort(key=lambda k: not k.endswith("/head"))
    if keys:
        yield Delete(tuple(keys))
    saver.cache.forget(thread_id)


def copy_thread(saver: BaseS3Saver, source: str, target: str) -> Plan[None]:
    """Copy every namespace of a thread into another (merged with what it holds)."""
    source, target = thread_of(source), thread_of(target)
    namespaces = (yield from _namespaces(saver, saver.keys.thread(source))).get(source, [])
    for ns in namespaces:
        loaded = yield Locked(source, ns, load(saver, source, ns))
        if loaded is not None:
            yield Locked(target, ns, rewrite(saver, target, ns, _adding(loaded.state)))


def delete_for_runs(saver: BaseS3Saver, run_ids: Sequence[str]) -> Plan[None]:
    """Delete the checkpoints (and writes) of runs, in every thread under the prefix.

    An administrative scan: it reads every namespace, since nothing indexes
    runs without costing every turn a request.
    """
    runs = {str(r) for r in run_ids}
    if not runs:
        return

    def drop(state: State) -> State | None:
        gone = {i for i, r in state.records.items() if r.run_id in runs}
        if not gone:
            return None
        return State(
            {i: r for i, r in state.records.items() if i not in gone},
            state.blobs,
            state.items,
            {i: w for i, w in state.writes.items() if i not in gone},
        )

    threads = yield from _namespaces(saver, saver.keys.prefix)
    for thread_id, namespaces in threads.items():
        for ns in namespaces:
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, drop, purge=True))


def prune(saver: BaseS3Saver, thread_ids: Sequence[str], strategy: str) -> Plan[None]:
    """Keep only the latest checkpoint per namespace, or delete the threads."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"unknown prune strategy {strategy!r}")
    for thread_id in [thread_of(t) for t in thread_ids]:
        if strategy == "delete":
            yield from delete_thread(saver, thread_id)
            continue
        namespaces = (yield from _namespaces(saver, saver.keys.thread(thread_id))).get(
            thread_id, []
        )
        for ns in namespaces:
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, _keep_latest, purge=True))


def delta_history(
    saver: BaseS3Saver, config: RunnableConfig, channels: Sequence[str]
) -> Plan[dict[str, DeltaChannelHistory]]:
    """DeltaChannel replay data of a checkpoint, from one read of its namespace.

    LangGraph asks right after loading the checkpoint; a checkpoint's ancestors
    never change, so the state that load left in the cache serves, with no
    request at all.
    """
    if not channels:
        return {}
    thread_id, ns, checkpoint_id = config_target(config)
    cached = saver.cache.get(thread_id, ns)
    if cached is not None and checkpoint_id in cached.state.records:
        state = cached.state
    else:
        loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
        state = loaded.state if loaded else State()
    return saver._delta_history(state, checkpoint_id or state.latest_id(), channels)


def rewrite(
    saver: BaseS3Saver,
    thread_id: str,
    ns: str,
    transform: Callable[[State], State | None],
    *,
    purge: bool = False,
) -> Plan[None]:
    """Read a namespace afresh, transform it and write it back, retrying on conflicts.

    ``transform`` returns ``None`` when there is nothing to change.
    """
    for _ in range(_WRITE_ATTEMPTS):
        loaded = yield from load(saver, thread_id, ns)
        changed = transform(loaded.state if loaded else State())
        if changed is None or (loaded is None and not changed.records and not changed.writes):
            return
        try:
            yield from write(saver, thread_id, ns, loaded, changed, purge=purge)
            return
        except CheckpointConflict:
            saver.cache.forget(thread_id, ns)
    raise CheckpointConflict(f"thread {thread_id!r} (ns {ns!r}) kept changing; gave up")


def _namespaces(saver: BaseS3Saver, prefix: str) -> Plan[dict[str, list[str]]]:
    """The namespaces with a head under ``prefix``, by thread (one LIST)."""
    keys = yield ListKeys(prefix)
    threads: dict[str, list[str]] = {}
    for key in keys:
        parsed = saver.keys.parse(key)
        if parsed is not None and parsed.kind == "head":
            threads.setdefault(parsed.thread_id, []).append(parsed.checkpoint_ns)
    return threads


def _adding(copied: State) -> Callable[[State], State]:
    return lambda state: union(state, copied)


def _keep_latest(state: State) -> State | None:
    kept = retain(state, 1)
    return None if kept is state else kept


def _moved(thread_id: str, ns: str) -> str:
    return (
        f"thread {thread_id!r} (ns {ns!r}) was changed by another writer since this "
        "saver read it; reload the latest checkpoint and retry"
    )
