"""One (thread, namespace) in memory, and the head object it is stored as. No I/O, no serde.

A ``State`` holds every retained checkpoint of a namespace:

- ``records``: per checkpoint id, its serialised bookkeeping and metadata,
  and the version of each channel;
- ``blobs``: per ``(channel, version)``, the value once, however many
  checkpoints share it (as the Postgres saver does). A list is stored as the
  digests of its elements, so the retained versions of a message window
  share every message they have in common;
- ``items``: the serialised list elements, by digest of their plain bytes;
- ``writes``: per checkpoint id, its pending writes;
- ``transcript``: when the saver keeps one, the messages not sealed yet.

The head holds all of it, so a read is one GET; with a bounded message
window and a bounded ``keep_last`` it stays bounded too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

Typed = tuple[str, bytes]
Version = str | int | float
BlobKey = tuple[str, Version]
BlobKind = Literal["v", "l", "s"]  # value, list of items, DeltaChannel snapshot of a list


class Record(NamedTuple):
    """One stored checkpoint."""

    id: str
    parent: str | None
    checkpoint: Typed  # serde-typed checkpoint, without channel values and versions
    metadata: Typed  # serde-typed metadata
    versions: dict[str, Version]
    run_id: str | None
    # DeltaChannels rebuilt from ancestors' writes (LangGraph's
    # counters_since_delta_snapshot): pruning keeps those ancestors.
    replay: tuple[str, ...]


class Blob(NamedTuple):
    """One channel value: a serde-typed value, or the digests of a list's elements."""

    kind: BlobKind
    value: Typed | None = None
    refs: tuple[bytes, ...] = ()


class WriteRecord(NamedTuple):
    """One stored pending write; ``value`` is the serde's ``(type, bytes)``."""

    task_id: str
    idx: int
    channel: str
    value: Typed
    task_path: str


class Entry(NamedTuple):
    """One transcript message not sealed yet: its item digest, and when it entered."""

    ref: bytes
    ts: str


@dataclass(frozen=True)
class Transcript:
    """Where a namespace's transcript stands.

    Positions ``[0, sealed * size)`` are in sealed segments of ``size``
    messages under ``gen``; the ``tail`` holds the positions after.
    """

    gen: str
    size: int
    sealed: int = 0
    tail: tuple[Entry, ...] = ()

    @property
    def length(self) -> int:
        """How many messages the transcript holds."""
        return self.sealed * self.size + len(self.tail)


@dataclass
class State:
    """Every retained checkpoint of one (thread, namespace); see the module docstring."""

    records: dict[str, Record] = field(default_factory=dict)
    blobs: dict[BlobKey, Blob] = field(default_factory=dict)
    items: dict[bytes, Typed] = field(default_factory=dict)
    writes: dict[str, tuple[WriteRecord, ...]] = field(default_factory=dict)
    transcript: Transcript | None = None

    def latest_id(self) -> str | None:
        """The highest checkpoint id (ids sort by creation time), if any."""
        return max(self.records, default=None)

    def copy(self) -> State:
        """A copy whose containers can change without touching this one."""
        return replace(
            self, records=dict(self.records), blobs=dict(self.blobs), items=dict(self.items),
            writes=dict(self.writes),
        )


def digest(typed: Typed) -> bytes:
    """The key of a list element among the items: a hash of its plain bytes."""
    return hashlib.blake2b(typed[0].encode() + b"\0" + typed[1], digest_size=16).digest()


def delta_ancestors(state: State, checkpoint_id: str) -> set[str]:
    """Ancestors whose writes rebuild the DeltaChannels of a checkpoint.

    Walks parents until every channel the checkpoint replays has a stored
    value (a snapshot), as LangGraph's ``get_delta_channel_history`` does.
    """
    record = state.records[checkpoint_id]
    need = {c for c in record.replay if (c, record.versions.get(c, "")) not in state.blobs}
    found: set[str] = set()
    parent = record.parent
    while need and parent is not None and parent in state.records and parent not in found:
        found.add(parent)
        ancestor = state.records[parent]
        need = {c for c in need if (c, ancestor.versions.get(c, "")) not in state.blobs}
        parent = ancestor.parent
    return found


def retain(state: State, keep: int) -> State:
    """Keep the newest ``keep`` checkpoints, and the ancestors their DeltaChannels need.

    Returns:
        ``state`` itself if nothing goes, else a state without the others and
        their writes (``collect`` drops what only they used).
    """
    newest = sorted(state.records, reverse=True)[: max(keep, 1)]
    kept = set(newest)
    for checkpoint_id in newest:
        kept |= delta_ancestors(state, checkpoint_id)
    if len(kept) == len(state.records):
        return state
    return replace(
        state,
        records={i: r for i, r in state.records.items() if i in kept},
        writes={i: w for i, w in state.writes.items() if i in kept or i not in state.records},
    )


def collect(state: State) -> State:
    """Drop the values and items that no retained checkpoint or tail entry uses."""
    blobs = {
        (c, v): blob
        for record in state.records.values()
        for c, v in record.versions.items()
        if (blob := state.blobs.get((c, v))) is not None
    }
    used = {ref for blob in blobs.values() for ref in blob.refs}
    if state.transcript is not None:
        used.update(entry.ref for entry in state.transcript.tail)
    latest = state.latest_id()
    return replace(
        state,
        blobs=blobs,
        items={ref: typed for ref, typed in state.items.items() if ref in used},
        # Writes may arrive before their checkpoint: keep those of newer ids.
        writes={
            i: w for i, w in state.writes.items()
            if i in state.records or latest is None or i > latest
        },
    )


def union(into: State, other: State) -> State:
    """``into`` with every checkpoint of ``other`` added (``other`` wins on equal ids)."""
    return replace(
        into,
        records={**into.records, **other.records},
        blobs={**into.blobs, **other.blobs},
        items={**into.items, **other.items},
        writes={**into.writes, **other.writes},
    )


def to_fields(state: State, token: bytes) -> dict[str, Any]:
    """The head object's map (see ``_codec`` for the envelope around it)."""
    transcript = state.transcript
    return {
        "token": token,
        "recs": [
            [r.id, r.parent, *r.checkpoint, *r.metadata, r.versions, r.run_id, list(r.replay)]
            for r in state.records.values()
        ],
        "blobs": [
            [c, v, b.kind, list(b.value) if b.value else None, list(b.refs)]
            for (c, v), b in state.blobs.items()
        ],
        "items": [[ref, *typed] for ref, typed in state.items.items()],
        "writes": [
            [i, [[*w[:3], *w.value, w.task_path] for w in ws]] for i, ws in state.writes.items()
        ],
        "log": None if transcript is None else [
            transcript.gen, transcript.size, transcript.sealed,
            [[e.ref, e.ts] for e in transcript.tail],
        ],
    }


def from_fields(fields: Mapping[str, Any]) -> tuple[State, bytes]:
    """Invert ``to_fields``: the state and the head's write token.

    Raises:
        KeyError, TypeError, ValueError: If the map is malformed.
    """
    records = {}
    for rid, parent, ct, cb, mt, mb, versions, run_id, replay in fields["recs"]:
        records[rid] = Record(
            rid, parent, typed_pair((ct, cb)), typed_pair((mt, mb)), dict(versions), run_id,
            tuple(replay),
        )
    blobs = {}
    for channel, version, kind, value, refs in fields["blobs"]:
        if kind not in ("v", "l", "s"):
            raise ValueError(f"bad blob {channel!r}@{version!r}")
        blobs[(channel, version)] = Blob(
            kind, typed_pair(value) if value else None, tuple(bytes(r) for r in refs)
        )
    items = {bytes(ref): typed_pair((kind, data)) for ref, kind, data in fields["items"]}
    writes = {
        cid: tuple(
            WriteRecord(t, int(i), c, typed_pair((vt, vb)), p) for t, i, c, vt, vb, p in ws
        )
        for cid, ws in fields["writes"]
    }
    log = fields["log"]
    transcript = None
    if log is not None:
        gen, size, sealed, tail = log
        transcript = Transcript(
            str(gen), int(size), int(sealed), tuple(Entry(bytes(r), str(t)) for r, t in tail)
        )
    return State(records, blobs, items, writes, transcript), bytes(fields["token"])


def typed_pair(pair: Any) -> Typed:
    """A serde ``(type, bytes)`` pair, checked.

    Raises:
        TypeError: If it is not one.
    """
    kind, data = pair
    if not isinstance(kind, str) or not isinstance(data, bytes):
        raise TypeError(f"not a (type, bytes) pair: {pair!r}")
    return kind, data
