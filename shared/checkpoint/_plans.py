"""Every operation of the saver as a plan (see ``_requests``), shared by both savers.

Request budget of a chat turn (``get_tuple`` of the latest, then ``put``):
one GET of the head (answered 304 if this saver holds it already), one
conditional PUT of it, and one PUT of a segment on a turn that seals one:
at most 3, whatever the conversation's length.

Sealing: a write that finds ``segment_size`` committed messages in the tail
(read from the head it builds on) first writes them into segment ``n``
with ``If-None-Match: *``, then drops them from the tail of the head it
writes. The messages of a committed position never change within a
transcript's ``gen``, so every writer that seals ``n`` writes the same
messages: a create that fails because the segment exists means it is
already sealed, by us or a concurrent writer, whichever head wins.
Segments are immutable and only ``delete_thread`` removes them, so no
purge can delete an object a concurrent head is about to name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointMetadata,
    CheckpointTuple,
)

from . import _legacy
from ._cache import Loaded
from ._codec import pack, unpack, version_of
from ._layout import config_target, place, thread_of
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
    Put,
)
from ._state import State, Transcript, collect, from_fields, retain, to_fields, typed_pair, union
from .base import BaseS3Saver, TranscriptPage
from .errors import CheckpointConflict, S3SaverError, S3Unavailable

_READ_ATTEMPTS = 4
WRITE_ATTEMPTS = 5
_HEAD = "head"


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
    """Read a namespace's head; revalidates what the cache holds (a 304 costs no body)."""
    head_key = saver.keys.head(thread_id, ns)
    for _ in range(_READ_ATTEMPTS):
        cached = saver.cache.get(thread_id, ns)
        found = yield Get(head_key, if_none_match=cached.etag if cached else None)
        if found is NOT_MODIFIED and cached is not None:
            return cached
        if not isinstance(found, Found):
            saver.cache.mark_absent(thread_id, ns)
            return None
        if version_of(found.body) == _legacy.VERSION:
            loaded = yield from _legacy.load(saver, thread_id, ns, found)
            if loaded is None:
                continue  # its base changed under the read: read the head again
        else:
            state, _ = _decode_head(saver, thread_id, ns, found.body)
            loaded = Loaded(found.etag, len(found.body), state)
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


def latest_metadata(
    saver: BaseS3Saver, thread_id: str, ns: str
) -> Plan[CheckpointMetadata | None]:
    """The metadata of a namespace's latest checkpoint, decoding nothing else."""
    thread_id = thread_of(thread_id)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    latest = loaded.state.records.get(loaded.state.latest_id() or "") if loaded else None
    return saver._load_metadata(latest) if latest else None


def list_checkpoints(
    saver: BaseS3Saver,
    config: RunnableConfig | None,
    *,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Plan[None]:
    """Emit matching checkpoints, newest first within each thread.

    A thread's namespaces are read (one GET each), then only the checkpoints
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


def transcript_page(
    saver: BaseS3Saver, thread_id: str, ns: str, before: int | None, limit: int
) -> Plan[TranscriptPage | None]:
    """Up to ``limit`` transcript messages before position ``before`` (default: the end).

    Reads the head and at most one sealed segment, so a page holds fewer than
    ``limit`` messages when it reaches the start of that segment.
    """
    if saver.transcript is None:
        raise ValueError("this saver keeps no transcript (pass transcript=CHANNEL)")
    if limit < 1 or (before is not None and before < 0):
        raise ValueError(f"invalid page: limit={limit!r}, before={before!r}")
    thread_id = thread_of(thread_id)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    latest = loaded.state.records.get(loaded.state.latest_id() or "") if loaded else None
    if loaded is None or latest is None:
        return None
    state = loaded.state
    log = state.transcript or Transcript("0" * 16, saver.segment_size)
    end = log.length if before is None else min(before, log.length)
    start = max(0, end - limit)
    tail_start = log.sealed * log.size
    entries = [
        (state.items[e.ref], e.ts)
        for e in log.tail[max(start, tail_start) - tail_start : max(end - tail_start, 0)]
    ]
    sealed_end = min(end, tail_start)
    if start < sealed_end:
        number = (sealed_end - 1) // log.size
        start = max(start, number * log.size)
        segment = yield from _read_segment(saver, thread_id, ns, log, number)
        if segment is None:
            return None  # deleted under the read
        entries = segment[start - number * log.size : sealed_end - number * log.size] + entries
    return TranscriptPage(saver._load_entries(entries), start, saver._load_metadata(latest))


def delete_thread(saver: BaseS3Saver, thread_id: str) -> Plan[None]:
    """Delete every object of a thread (one LIST, then batched deletes)."""
    thread_id = thread_of(thread_id)
    keys = yield ListKeys(saver.keys.thread(thread_id))
    # Heads first, so readers stop finding the thread before its segments go.
    keys.sort(key=lambda k: not k.endswith("/head"))
    if keys:
        yield Delete(tuple(keys))
    saver.cache.forget(thread_id)


def copy_thread(saver: BaseS3Saver, source: str, target: str) -> Plan[None]:
    """Copy every namespace of a thread into another (merged with what it holds).

    The target's transcript becomes a copy of the source's, under a new
    ``gen``: each segment is read and sealed again for its new place.
    """
    source, target = thread_of(source), thread_of(target)
    namespaces = (yield from _namespaces(saver, saver.keys.thread(source))).get(source, [])
    for ns in namespaces:
        loaded = yield Locked(source, ns, load(saver, source, ns))
        if loaded is None:
            continue
        copied = loaded.state
        log = copied.transcript
        if log is not None:
            log = replace(log, gen=os.urandom(8).hex())
            for number in range(log.sealed):
                segment = yield from _read_segment(saver, source, ns, copied.transcript, number)
                if segment is None:
                    raise CheckpointConflict(f"thread {source!r} was deleted while copied")
                yield from _write_segment(saver, target, ns, log, number, segment)
        adding = _adding(replace(copied, transcript=log))
        yield Locked(target, ns, rewrite(saver, target, ns, adding))


def delete_for_runs(saver: BaseS3Saver, run_ids: Sequence[str]) -> Plan[None]:
    """Delete the checkpoints (and writes) of runs, in every thread under the prefix.

    An administrative scan: it reads every namespace, since nothing indexes
    runs without costing every turn a request. Transcripts keep their messages.
    """
    runs = {str(r) for r in run_ids}
    if not runs:
        return

    def drop(state: State) -> State | None:
        gone = {i for i, r in state.records.items() if r.run_id in runs}
        if not gone:
            return None
        return replace(
            state,
            records={i: r for i, r in state.records.items() if i not in gone},
            writes={i: w for i, w in state.writes.items() if i not in gone},
        )

    threads = yield from _namespaces(saver, saver.keys.prefix)
    for thread_id, namespaces in threads.items():
        for ns in namespaces:
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, drop))


def prune(saver: BaseS3Saver, thread_ids: Sequence[str], strategy: str) -> Plan[None]:
    """Keep only the latest checkpoint per namespace, or delete the threads.

    ``keep_latest`` rewrites heads only: transcripts and their segments stay.
    """
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
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, _keep_latest))


def rewrite(
    saver: BaseS3Saver, thread_id: str, ns: str, transform: Callable[[State], State | None]
) -> Plan[None]:
    """Read a namespace afresh, transform it and write it back, retrying on conflicts.

    ``transform`` returns ``None`` when there is nothing to change.
    """
    for _ in range(WRITE_ATTEMPTS):
        loaded = yield from load(saver, thread_id, ns)
        changed = transform(loaded.state if loaded else State())
        if changed is None or (loaded is None and not changed.records and not changed.writes):
            return
        try:
            yield from write(saver, thread_id, ns, loaded, changed)
            return
        except CheckpointConflict:
            saver.cache.forget(thread_id, ns)
    raise CheckpointConflict(f"thread {thread_id!r} (ns {ns!r}) kept changing; gave up")


def write(
    saver: BaseS3Saver, thread_id: str, ns: str, loaded: Loaded | None, state: State
) -> Plan[None]:
    """Make ``state`` the namespace's head, conditional on ``loaded`` being current.

    Seals the full segments of the committed tail first (module docstring).

    Raises:
        CheckpointConflict: If the head changed since ``loaded`` was read.
    """
    committed = loaded.state.transcript if loaded is not None else None
    log = state.transcript
    if committed is not None and log is not None and log.gen == committed.gen:
        ready = (len(committed.tail) // log.size) if log.sealed == committed.sealed else 0
        for offset in range(ready):
            chunk = log.tail[offset * log.size : (offset + 1) * log.size]
            entries = [(state.items[e.ref], e.ts) for e in chunk]
            yield from _write_segment(saver, thread_id, ns, log, log.sealed + offset, entries)
        if ready:
            state = replace(
                state, transcript=replace(
                    log, sealed=log.sealed + ready, tail=log.tail[ready * log.size :]
                )
            )
    state = collect(state)
    token = os.urandom(8)
    key = saver.keys.head(thread_id, ns)
    body = pack(
        to_fields(state, token), cipher=saver.cipher, place=place(thread_id, ns, _HEAD),
        compress_over=saver.compress_over,
    )
    try:
        etag: str = yield Put(
            key, body, if_match=loaded.etag if loaded else None, create=loaded is None
        )
    except CheckpointConflict:
        # A retried PUT whose first try landed fails its own condition: look
        # before blaming another writer.
        found = yield Get(key)
        if not isinstance(found, Found) or _token(saver, thread_id, ns, found.body) != token:
            raise
        etag = found.etag
    saver.cache.put(thread_id, ns, Loaded(etag, len(body), state))
    if loaded is not None and loaded.legacy:
        yield Delete(_legacy.base_keys(saver, thread_id, ns))


def _write_segment(
    saver: BaseS3Saver, thread_id: str, ns: str, log: Transcript, number: int,
    entries: Sequence[tuple[tuple[str, bytes], str]],
) -> Plan[None]:
    key = saver.keys.segment(thread_id, ns, log.gen, number)
    body = pack(
        {"entries": [[*typed, ts] for typed, ts in entries]}, cipher=saver.cipher,
        place=place(thread_id, ns, f"segment/{log.gen}/{number}"),
        compress_over=saver.compress_over,
    )
    with contextlib.suppress(CheckpointConflict):
        # Failing means sealed already, with the same messages (module docstring).
        yield Put(key, body, create=True)


def _read_segment(
    saver: BaseS3Saver, thread_id: str, ns: str, log: Transcript | None, number: int
) -> Plan[list[tuple[tuple[str, bytes], str]] | None]:
    assert log is not None
    found = yield Get(saver.keys.segment(thread_id, ns, log.gen, number))
    if not isinstance(found, Found):
        return None
    fields = unpack(
        found.body, "segment", cipher=saver.cipher,
        place=place(thread_id, ns, f"segment/{log.gen}/{number}"),
    )
    try:
        return [(typed_pair((kind, data)), str(ts)) for kind, data, ts in fields["entries"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise S3SaverError(f"corrupt segment {number} of {thread_id!r}: {exc!r}") from exc


def _decode_head(saver: BaseS3Saver, thread_id: str, ns: str, body: bytes) -> tuple[State, bytes]:
    fields = unpack(body, "head", cipher=saver.cipher, place=place(thread_id, ns, _HEAD))
    try:
        return from_fields(fields)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise S3SaverError(f"corrupt head of {thread_id!r}: {exc!r}") from exc


def _token(saver: BaseS3Saver, thread_id: str, ns: str, body: bytes) -> bytes | None:
    try:
        return _decode_head(saver, thread_id, ns, body)[1]
    except S3SaverError:
        return None


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
    def add(state: State) -> State:
        return replace(union(state, copied), transcript=copied.transcript or state.transcript)

    return add


def _keep_latest(state: State) -> State | None:
    kept = retain(state, 1)
    return None if kept is state else kept


def moved(thread_id: str, ns: str) -> str:
    return (
        f"thread {thread_id!r} (ns {ns!r}) was changed by another writer since this "
        "saver read it; reload the latest checkpoint and retry"
    )
