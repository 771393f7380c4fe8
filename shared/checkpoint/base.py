"""What the sync and async S3 savers share: layout, serde, values, the transcript. No I/O.

Storage layout: see ``_layout`` for the keys and ``_state`` for what the head
holds; every object is a versioned msgpack map (``_codec``), deflated over
1 KiB, optionally sealed with AES-GCM. Values go through the saver's
``serde`` as ``(type, bytes)`` pairs stored as raw binaries. A list value is
stored as the digests of its elements, so consecutive versions of a message
window share the messages they have in common.
"""

from __future__ import annotations

import os
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from ._cache import DEFAULT_CACHE_BYTES, StateCache
from ._codec import COMPRESS_OVER
from ._layout import KeyLayout, checkpoint_config, normalise_prefix, validate_id
from ._s3 import RetryPolicy
from ._state import Blob, Entry, Record, State, Transcript, Typed, WriteRecord, digest
from .errors import S3SaverError
from .serde import ObjectCipher, default_serde

# Messages per sealed transcript segment: the head carries at most this many
# (plus one turn's) of them, and a history page reads at most one segment.
SEGMENT_SIZE = 100
# What a serde or a malformed object raises; NotImplementedError is an unknown type
# tag, e.g. "pickle", which the default serde refuses to load.
_UNREADABLE = (KeyError, TypeError, ValueError, IndexError, AttributeError, NotImplementedError)


class TranscriptEntry(NamedTuple):
    """One message of a transcript, with the ``ts`` of the checkpoint it entered in."""

    value: Any
    ts: str


class TranscriptPage(NamedTuple):
    """Consecutive transcript messages, oldest first.

    Attributes:
        entries: The messages.
        start: The position of the first one (0 is the conversation's first).
        metadata: The metadata of the namespace's latest checkpoint.
    """

    entries: list[TranscriptEntry]
    start: int
    metadata: CheckpointMetadata


def merge_writes(
    existing: Sequence[WriteRecord], new: Sequence[WriteRecord]
) -> list[WriteRecord] | None:
    """Merge ``new`` into ``existing`` the way LangGraph savers must.

    Regular writes keep the first value stored for a ``(task_id, idx)``, so a
    retried task cannot change history; special channels (negative indexes from
    ``WRITES_IDX_MAP``, e.g. errors and interrupts) are replaced.

    Args:
        existing: Records already stored for the checkpoint.
        new: Records of one ``put_writes`` call.

    Returns:
        The merged records, or ``None`` if nothing changed (no upload needed).
    """
    merged = {(r.task_id, r.idx): r for r in existing}
    changed = False
    for record in new:
        key = (record.task_id, record.idx)
        if (record.idx >= 0 and key in merged) or merged.get(key) == record:
            continue
        merged[key] = record
        changed = True
    return list(merged.values()) if changed else None


class BaseS3Saver(BaseCheckpointSaver[str]):
    """Everything of the S3 saver that does no I/O; ``S3Saver`` and
    ``AsyncS3Saver`` add the client calls.

    Args:
        client: An open S3 client (boto3 for ``S3Saver``, aiobotocore for
            ``AsyncS3Saver``); the caller closes it. Prefer ``from_conn_string``.
        bucket: The bucket.
        prefix: Key prefix, normalised to end in one ``/`` (or empty).
        serde: Serializer for checkpoints, metadata, values and writes; the
            default never unpickles.
        keep_last: Keep only this many checkpoints per thread and namespace
            (and the ancestors a DeltaChannel needs); ``None`` keeps all.
        retry: Retries of throttled or failed requests.
        cache_bytes: Bound on what the saver remembers of recent threads.
        encryption_key: A 16, 24 or 32-byte AES key: every object is sealed
            with AES-GCM, bound to its thread, namespace and role.
        transcript: The name of a channel holding a list of messages (e.g.
            ``"messages"``): every element that enters it is also kept, in
            order, in the namespace's transcript, read back by pages
            (``aget_transcript``) however short the channel itself is kept.
            ``None`` keeps no transcript.
        segment_size: Messages per sealed transcript segment.

    Raises:
        ValueError: If ``keep_last`` or ``segment_size`` is below 1, or the key
            has the wrong length.
    """

    serde: SerializerProtocol = default_serde()

    def __init__(
        self,
        client: Any = None,
        bucket: str = "",
        prefix: str = "",
        *,
        serde: SerializerProtocol | None = None,
        keep_last: int | None = None,
        retry: RetryPolicy | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        encryption_key: bytes | None = None,
        transcript: str | None = None,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        super().__init__(serde=serde)
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        if segment_size < 1:
            raise ValueError(f"segment_size must be at least 1, got {segment_size}")
        self.bucket = bucket
        self.keys = KeyLayout(normalise_prefix(prefix))
        self.keep_last = keep_last
        self.cipher = ObjectCipher(encryption_key) if encryption_key else None
        self.transcript = transcript
        self.segment_size = segment_size
        self.compress_over = COMPRESS_OVER
        # Shared, not copied, by the clones LangGraph makes with ``with_allowlist``.
        self.cache = StateCache(cache_bytes)
        self._store = self._open_store(client, bucket, retry or RetryPolicy())
        self._locks: weakref.WeakValueDictionary[tuple[str, str], Any] = (
            weakref.WeakValueDictionary()
        )
        self._locks_mutex = threading.Lock()

    def _open_store(self, client: Any, bucket: str, retry: RetryPolicy) -> Any:
        """The object performing requests; the I/O classes return theirs."""
        return None

    @property
    def client(self) -> Any:
        """The underlying S3 client (e.g. to register event hooks)."""
        return self._store.client

    # --- checkpoints ------------------------------------------------------

    def _dump_record(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        parent_id: str | None,
    ) -> Record:
        """Serialise a checkpoint's bookkeeping and metadata (not its values)."""
        full = get_checkpoint_metadata(config, metadata)
        versions = dict(checkpoint["channel_versions"])
        counters = full.get("counters_since_delta_snapshot") or {}
        run_id = full.get("run_id")
        rest = {
            k: v for k, v in checkpoint.items() if k not in ("channel_values", "channel_versions")
        }
        return Record(
            id=validate_id(checkpoint["id"], "checkpoint_id"),
            parent=parent_id,
            checkpoint=self.serde.dumps_typed(rest),
            metadata=self.serde.dumps_typed(full),
            versions=versions,
            run_id=run_id if isinstance(run_id, str) else None,
            replay=tuple(c for c in counters if c in versions),
        )

    def _store_values(
        self, state: State, record: Record, values: Mapping[str, Any], ts: str
    ) -> None:
        """Add to ``state`` the values of ``record`` it does not hold yet, and
        to its transcript the messages that entered the transcript channel.

        A ``(channel, version)`` already stored is the same value (versions
        only move on change), so unchanged channels cost nothing.
        """
        parent = state.records.get(record.parent or "") or state.records.get(
            state.latest_id() or ""
        )
        for channel, version in record.versions.items():
            if (channel, version) in state.blobs or channel not in values:
                continue
            value = values[channel]
            if type(value) is list:
                blob = Blob("l", refs=self._store_items(state, value))
            elif isinstance(value, _DeltaSnapshot) and type(value.value) is list:
                blob = Blob("s", refs=self._store_items(state, value.value))
            else:
                blob = Blob("v", self.serde.dumps_typed(value))
            state.blobs[(channel, version)] = blob
            if channel == self.transcript and blob.kind == "l":
                self._append(state, parent, channel, blob, ts)

    def _store_items(self, state: State, values: list[Any]) -> tuple[bytes, ...]:
        refs = []
        for value in values:
            typed = self.serde.dumps_typed(value)
            ref = digest(typed)
            state.items.setdefault(ref, typed)
            refs.append(ref)
        return tuple(refs)

    def _append(
        self, state: State, parent: Record | None, channel: str, blob: Blob, ts: str
    ) -> None:
        """Append to the transcript what the list holds and its previous version did not."""
        before = state.blobs.get((channel, parent.versions.get(channel, ""))) if parent else None
        known = set(before.refs) if before is not None else set()
        new = [ref for ref in blob.refs if ref not in known]
        if not new:
            return
        transcript = state.transcript or Transcript(os.urandom(8).hex(), self.segment_size)
        state.transcript = Transcript(
            transcript.gen, transcript.size, transcript.sealed,
            transcript.tail + tuple(Entry(ref, ts) for ref in new),
        )

    def _load_value(self, state: State, blob: Blob) -> Any:
        if blob.kind == "v":
            assert blob.value is not None
            return self.serde.loads_typed(blob.value)
        values = [self.serde.loads_typed(state.items[ref]) for ref in blob.refs]
        return values if blob.kind == "l" else _DeltaSnapshot(values)

    def _load_tuple(
        self, thread_id: str, checkpoint_ns: str, state: State, record: Record
    ) -> CheckpointTuple:
        """Rebuild one checkpoint with its values, metadata and pending writes.

        Raises:
            S3SaverError: If something stored cannot be decoded.
        """
        try:
            checkpoint = self.serde.loads_typed(record.checkpoint)
            checkpoint["channel_versions"] = dict(record.versions)
            checkpoint["channel_values"] = {
                channel: self._load_value(state, blob)
                for channel, version in record.versions.items()
                if (blob := state.blobs.get((channel, version))) is not None
            }
            metadata = self.serde.loads_typed(record.metadata)
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable checkpoint {record.id!r}: {exc!r}") from exc
        # A pruned parent leaves no dangling config, as in LangGraph's Postgres saver.
        parent = record.parent if record.parent in state.records else None
        return CheckpointTuple(
            config=checkpoint_config(thread_id, checkpoint_ns, record.id),
            checkpoint=cast(Checkpoint, checkpoint),
            metadata=cast(CheckpointMetadata, metadata),
            parent_config=checkpoint_config(thread_id, checkpoint_ns, parent) if parent else None,
            pending_writes=self._load_writes(state.writes.get(record.id, ())),
        )

    def _matches(self, record: Record, metadata_filter: Mapping[str, Any] | None) -> bool:
        """Whether every key of the filter equals the record's metadata's."""
        if not metadata_filter:
            return True
        metadata = self._load_metadata(record)
        return all(metadata.get(k) == v for k, v in metadata_filter.items())

    # --- writes -------------------------------------------------------------

    def _dump_writes(
        self, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> list[WriteRecord]:
        """Serialise the writes of one task, indexed the way LangGraph expects."""
        return [
            WriteRecord(
                task_id, WRITES_IDX_MAP.get(channel, i), channel, self.serde.dumps_typed(value),
                task_path,
            )
            for i, (channel, value) in enumerate(writes)
        ]

    def _load_writes(self, records: Sequence[WriteRecord]) -> list[PendingWrite]:
        """Deserialise pending writes, in ``writes_sort_key`` order (task path, id, index)."""
        try:
            return [
                (r.task_id, r.channel, self.serde.loads_typed(r.value))
                for r in _ordered(records)
            ]
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable pending write: {exc!r}") from exc

    def _load_entries(self, entries: Sequence[tuple[Typed, str]]) -> list[TranscriptEntry]:
        """Deserialise transcript messages.

        Raises:
            S3SaverError: If one cannot be decoded.
        """
        try:
            return [TranscriptEntry(self.serde.loads_typed(typed), ts) for typed, ts in entries]
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable transcript message: {exc!r}") from exc

    def _load_metadata(self, record: Record) -> CheckpointMetadata:
        try:
            return cast(CheckpointMetadata, self.serde.loads_typed(record.metadata))
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable metadata of {record.id!r}: {exc!r}") from exc

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """Return the next channel version: ``"%032d.%08x"``, string-sortable.

        The integer part orders versions (and reads LangGraph's ``"%032d.%016f"``
        ones too); the random suffix keeps two branches forked from one
        checkpoint from minting the same version for different values. It is
        shorter than the reference savers' float, as every version is stored
        in each checkpoint and the head is uploaded every turn.

        Args:
            current: The current version (``None`` for a new channel).
            channel: Unused; kept for LangGraph's signature.

        Returns:
            A version greater than ``current`` in string order.
        """
        if current is None:
            current_v = 0
        elif isinstance(current, int | float):
            current_v = int(current)
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.getrandbits(32):08x}"


def _ordered(records: Sequence[WriteRecord]) -> list[WriteRecord]:
    return sorted(records, key=lambda r: writes_sort_key(r.task_path, r.task_id, r.idx))


__all__ = ["BaseS3Saver", "TranscriptEntry", "TranscriptPage", "merge_writes"]
