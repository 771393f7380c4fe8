"""One (thread, namespace) in memory, and the two objects it is stored as. No I/O, no serde.

A ``State`` holds every retained checkpoint of a namespace:

- ``records``: per checkpoint id, its serialised bookkeeping and metadata,
  and the version of each channel (plain, to find the values);
- ``blobs``: per ``(channel, version)``, the value once, however many
  checkpoints share it (as the Postgres saver does). A list is stored as
  ranges into ``items``, so consecutive versions of a chat history share
  every message they have in common;
- ``items``: an append-only log of serialised list elements;
- ``writes``: per checkpoint id, its pending writes.

A ``Segment`` is what one object holds. A self-contained segment holds a whole
state; a head may instead hold only what changed since a *base* (a frozen,
self-contained segment in one of two slots), so writing a turn uploads the
new messages and not the conversation.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._codec import pack, unpack
from .errors import S3SaverError

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
    """One channel value: a serde-typed value, or ranges into the item log."""

    kind: BlobKind
    value: Typed | None = None
    ranges: tuple[int, ...] = ()  # flat (start, stop) pairs


class WriteRecord(NamedTuple):
    """One stored pending write; ``value`` is the serde's ``(type, bytes)``."""

    task_id: str
    idx: int
    channel: str
    value: Typed
    task_path: str


@dataclass
class State:
    """Every retained checkpoint of one (thread, namespace); see the module docstring."""

    records: dict[str, Record] = field(default_factory=dict)
    blobs: dict[BlobKey, Blob] = field(default_factory=dict)
    items: list[Typed] = field(default_factory=list)
    writes: dict[str, tuple[WriteRecord, ...]] = field(default_factory=dict)

    def latest_id(self) -> str | None:
        """The highest checkpoint id (ids sort by creation time), if any."""
        return max(self.records, default=None)

    def copy(self) -> State:
        """A copy whose containers can change without touching this one."""
        return State(dict(self.records), dict(self.blobs), list(self.items), dict(self.writes))


@dataclass(frozen=True)
class Segment:
    """What one stored object holds.

    ``delta`` is the whole state for a self-contained segment, else what the
    head adds to its base: records, blobs and writes that are new or changed,
    items from ``items_start`` on, and the base's records it ``dropped``.
    """

    delta: State
    token: bytes
    base: tuple[int, str] | None = None  # (slot, ETag) of the base this head builds on
    items_start: int = 0
    dropped: frozenset[str] = frozenset()
    slots: tuple[str | None, str | None] = (None, None)  # last known ETag of each slot
    last_slot: int | None = None
    spent: int = 0  # bytes of delta heads uploaded since the base was written


def expand(ranges: tuple[int, ...]) -> list[int]:
    """The item indexes ``ranges`` cover, in order."""
    return [i for s, e in zip(ranges[::2], ranges[1::2], strict=True) for i in range(s, e)]


def to_ranges(indexes: Iterable[int]) -> tuple[int, ...]:
    """Run-length encode item indexes as flat ``(start, stop)`` pairs."""
    flat: list[int] = []
    for i in indexes:
        if flat and flat[-1] == i:
            flat[-1] = i + 1
        else:
            flat += [i, i + 1]
    return tuple(flat)


def merge(head: Segment, base: Segment | None) -> State:
    """The state a head stands for: itself, or its base with its delta applied.

    Raises:
        S3SaverError: If the head does not continue the base's item log.
    """
    if base is None:
        return head.delta.copy()
    below = base.delta
    if head.items_start != len(below.items):
        raise S3SaverError("head does not continue its base (item log mismatch)")
    records = {i: r for i, r in below.records.items() if i not in head.dropped}
    records.update(head.delta.records)
    writes = {i: w for i, w in below.writes.items() if i not in head.dropped}
    writes.update(head.delta.writes)
    return State(
        records, {**below.blobs, **head.delta.blobs}, below.items + head.delta.items, writes
    )


def diff(state: State, base: Segment) -> tuple[State, frozenset[str]] | None:
    """What a head over ``base`` must hold to stand for ``state``.

    Returns:
        ``(delta, dropped)``, or ``None`` if ``state`` cannot be written as a
        delta over this base (it rewrote the item log or dropped writes on its
        own): then only a self-contained head will do.
    """
    below = base.delta
    if len(state.items) < len(below.items):
        return None
    dropped = frozenset(below.records) - frozenset(state.records)
    if any(i not in state.writes and i not in dropped for i in below.writes):
        return None
    # Values only pruned checkpoints used are left out: they would ride along
    # in every head until the next compaction.
    used = {(c, v) for record in state.records.values() for c, v in record.versions.items()}
    delta = State(
        {i: r for i, r in state.records.items() if below.records.get(i) != r},
        {k: b for k, b in state.blobs.items() if k in used and below.blobs.get(k) != b},
        state.items[len(below.items) :],
        {i: w for i, w in state.writes.items() if below.writes.get(i) != w},
    )
    return delta, dropped


def compact(state: State) -> State:
    """Drop what no retained checkpoint uses and renumber the item log densely."""
    blobs: dict[BlobKey, Blob] = {}
    for record in state.records.values():
        for channel, version in record.versions.items():
            if (blob := state.blobs.get((channel, version))) is not None:
                blobs[(channel, version)] = blob
    # Union of every range in use, as sorted disjoint intervals.
    spans = sorted(
        (s, e)
        for b in blobs.values()
        for s, e in zip(b.ranges[::2], b.ranges[1::2], strict=True)
        if e > s
    )
    used: list[list[int]] = []
    for s, e in spans:
        if used and s <= used[-1][1]:
            used[-1][1] = max(used[-1][1], e)
        else:
            used.append([s, e])
    starts = [s for s, _ in used]
    offsets: list[int] = []
    items: list[Typed] = []
    for s, e in used:
        offsets.append(len(items))
        items.extend(state.items[s:e])

    def renumber(ranges: tuple[int, ...]) -> tuple[int, ...]:
        moved: list[int] = []
        for s, e in zip(ranges[::2], ranges[1::2], strict=True):
            if e > s:
                k = bisect.bisect_right(starts, s) - 1
                moved += [offsets[k] + s - starts[k], offsets[k] + e - starts[k]]
        return tuple(moved)

    latest = state.latest_id()
    return State(
        dict(state.records),
        {k: b._replace(ranges=renumber(b.ranges)) if b.ranges else b for k, b in blobs.items()},
        items,
        {
            # Writes may arrive before their checkpoint: keep those of newer ids.
            i: w
            for i, w in state.writes.items()
            if i in state.records or latest is None or i > latest
        },
    )


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

    Args:
        state: The state; not modified.
        keep: How many checkpoints to keep (at least one).

    Returns:
        ``state`` itself if nothing goes, else a state without the others and
        their writes. Values and items go at the next compaction.
    """
    newest = sorted(state.records, reverse=True)[: max(keep, 1)]
    if len(newest) == len(state.records):
        return state
    kept = set(newest)
    for checkpoint_id in newest:
        kept |= delta_ancestors(state, checkpoint_id)
    if len(kept) == len(state.records):
        return state
    return State(
        {i: r for i, r in state.records.items() if i in kept},
        state.blobs,
        state.items,
        {i: w for i, w in state.writes.items() if i in kept or i not in state.records},
    )


def encode(segment: Segment, *, compress_over: int) -> bytes:
    """Serialise a segment (see ``_codec`` for the envelope)."""
    delta = segment.delta
    return pack(
        {
            "token": segment.token,
            "base": list(segment.base) if segment.base else None,
            "i0": segment.items_start,
            "drop": sorted(segment.dropped),
            "slots": list(segment.slots),
            "last": segment.last_slot,
            "spent": segment.spent,
            "recs": [
                [r.id, r.parent, *r.checkpoint, *r.metadata, r.versions, r.run_id, list(r.replay)]
                for r in delta.records.values()
            ],
            "blobs": [
                [c, v, b.kind, list(b.value) if b.value else None, list(b.ranges)]
                for (c, v), b in delta.blobs.items()
            ],
            "items": [list(t) for t in delta.items],
            "writes": [[i, [[*w[:3], *w.value, w.task_path] for w in ws]] for i, ws in
                       delta.writes.items()],
        },
        compress_over=compress_over,
    )


def decode(body: bytes, what: str) -> Segment:
    """Invert ``encode``.

    Raises:
        S3SaverError: If the object is corrupt or of another format version.
    """
    fields = unpack(body, what)
    try:
        return _segment(fields)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise S3SaverError(f"corrupt {what} object: {exc!r}") from exc


def _typed(pair: Any) -> Typed:
    kind, data = pair
    if not isinstance(kind, str) or not isinstance(data, bytes):
        raise TypeError(f"not a (type, bytes) pair: {pair!r}")
    return kind, data


def _segment(fields: Mapping[str, Any]) -> Segment:
    records = {}
    for rid, parent, ct, cb, mt, mb, versions, run_id, replay in fields["recs"]:
        records[rid] = Record(
            rid, parent, _typed((ct, cb)), _typed((mt, mb)), dict(versions), run_id,
            tuple(replay),
        )
    blobs = {}
    for channel, version, kind, value, ranges in fields["blobs"]:
        if kind not in ("v", "l", "s") or len(ranges) % 2:
            raise ValueError(f"bad blob {channel!r}@{version!r}")
        blobs[(channel, version)] = Blob(kind, _typed(value) if value else None, tuple(ranges))
    writes = {
        cid: tuple(WriteRecord(t, int(i), c, _typed((vt, vb)), p) for t, i, c, vt, vb, p in ws)
        for cid, ws in fields["writes"]
    }
    base = fields["base"]
    slots = fields["slots"]
    return Segment(
        delta=State(records, blobs, [_typed(t) for t in fields["items"]], writes),
        token=bytes(fields["token"]),
        base=(int(base[0]), str(base[1])) if base else None,
        items_start=int(fields["i0"]),
        dropped=frozenset(fields["drop"]),
        slots=(slots[0], slots[1]),
        last_slot=fields["last"],
        spent=int(fields["spent"]),
    )


def union(into: State, other: State) -> State:
    """``into`` with everything of ``other`` added (``other`` wins on equal ids and versions).

    ``other``'s items are appended, so ``into``'s item log keeps its numbering.
    """
    shift = len(into.items)
    blobs = dict(into.blobs)
    for key, blob in other.blobs.items():
        blobs[key] = blob._replace(ranges=tuple(i + shift for i in blob.ranges))
    return State(
        {**into.records, **other.records},
        blobs,
        into.items + other.items,
        {**into.writes, **other.writes},
    )
