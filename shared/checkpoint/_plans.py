"""Reading and writing a namespace's head as plans (see ``_requests``), shared by
both savers; the operations built on them are in ``_reads``, ``_puts`` and
``_maintenance``.

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

from . import _legacy
from ._cache import Loaded
from ._codec import pack, unpack, version_of
from ._layout import place
from ._requests import (
    NOT_MODIFIED,
    Delete,
    Found,
    Get,
    HeadBucket,
    ListKeys,
    Plan,
    Put,
)
from ._state import State, Transcript, collect, from_fields, to_fields, typed_pair
from .base import BaseS3Saver
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


def rewrite(
    saver: BaseS3Saver, thread_id: str, ns: str, transform: Callable[[State], State | None],
    cached: bool = False,
) -> Plan[None]:
    """Read a namespace, transform it and write it back, retrying on conflicts.

    ``transform`` returns ``None`` when there is nothing to change. The first
    try reads the head afresh, or with ``cached`` builds on the head this
    saver holds (or knows to be absent), for a change that does not depend
    on the head being the latest; a retry after a conflict always reads.
    """
    for _ in range(WRITE_ATTEMPTS):
        loaded = saver.cache.get(thread_id, ns) if cached else None
        if loaded is None and not (cached and saver.cache.is_absent(thread_id, ns)):
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
            yield from write_segment(saver, thread_id, ns, log, log.sealed + offset, entries)
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


def write_segment(
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


def read_segment(
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


def namespaces_under(saver: BaseS3Saver, prefix: str) -> Plan[dict[str, list[str]]]:
    """The namespaces with a head under ``prefix``, by thread (one LIST)."""
    keys = yield ListKeys(prefix)
    threads: dict[str, list[str]] = {}
    for key in keys:
        parsed = saver.keys.parse(key)
        if parsed is not None and parsed.kind == "head":
            threads.setdefault(parsed.thread_id, []).append(parsed.checkpoint_ns)
    return threads


def moved(thread_id: str, ns: str) -> str:
    return (
        f"thread {thread_id!r} (ns {ns!r}) was changed by another writer since this "
        "saver read it; reload the latest checkpoint and retry"
    )
