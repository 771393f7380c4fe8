"""``S3Saver``: LangGraph checkpoints in S3 through one boto3 client (sync).

All decisions live in the plans (``_plans``, ``_reads``, ``_puts`` and
``_maintenance``, shared with ``AsyncS3Saver``); this module only performs
their requests. Safe to share between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar, cast

import boto3
from botocore.config import Config
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import _maintenance as maintenance
from . import _plans as plans
from . import _puts as puts
from . import _reads as reads
from ._layout import parse_conn_string
from ._requests import Emit, Locked, Plan, PlanCursor, Step
from ._s3 import CLIENT_CONFIG, RetryPolicy, SyncStore
from .base import SEGMENT_SIZE, BaseS3Saver, TranscriptPage
from .errors import S3SaverError

T = TypeVar("T")


class S3Saver(BaseS3Saver):
    """LangGraph checkpoint saver storing threads as S3 objects (sync).

    Same storage, costs and guarantees as ``AsyncS3Saver``; the constructor's
    arguments are ``BaseS3Saver``'s, with a boto3 client.
    """

    _store: SyncStore

    def _open_store(self, client: Any, bucket: str, retry: RetryPolicy) -> SyncStore:
        return SyncStore(client, bucket, retry)

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        *,
        serde: SerializerProtocol | None = None,
        keep_last: int | None = None,
        retry: RetryPolicy | None = None,
        encryption_key: bytes | None = None,
        transcript: str | None = None,
        segment_size: int = SEGMENT_SIZE,
        max_connections: int = 64,
    ) -> Iterator[Self]:
        """Open a saver on ``s3://BUCKET/PREFIX`` for the life of the context.

        Sync twin of ``AsyncS3Saver.from_conn_string``, with a boto3 client.
        """
        bucket, prefix = parse_conn_string(conn_string)
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region_name,
            config=CLIENT_CONFIG.merge(Config(max_pool_connections=max_connections))
        )
        try:
            yield cls(client, bucket, prefix, serde=serde, keep_last=keep_last, retry=retry,
                encryption_key=encryption_key, transcript=transcript, segment_size=segment_size,
            )
        finally:
            client.close()

    def setup(self) -> None:
        """Check that the bucket exists and answers; creates nothing.

        Sync twin of ``AsyncS3Saver.setup``: same arguments, results and errors.
        """
        self._run(plans.setup(self))

    def ping(self) -> None:
        """Cheap readiness probe: one HEAD of the bucket.

        Sync twin of ``AsyncS3Saver.aping``: same arguments, results and errors.
        """
        self._run(plans.ping(self))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch one checkpoint: ``checkpoint_id`` from the config, else the latest.

        Sync twin of ``AsyncS3Saver.aget_tuple``: same arguments, results and errors.
        """
        return self._run(reads.get_tuple(self, config))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; with the highest id it becomes the latest.

        Sync twin of ``AsyncS3Saver.aput``: same arguments, results and errors.
        """
        return self._run(puts.put(self, config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes of one task against a checkpoint.

        Sync twin of ``AsyncS3Saver.aput_writes``: same arguments, results and errors.
        """
        self._run(puts.put_writes(self, config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread, in all namespaces.

        Sync twin of ``AsyncS3Saver.adelete_thread``: same arguments, results and errors.
        """
        self._run(maintenance.delete_thread(self, thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread to another, in all namespaces.

        Sync twin of ``AsyncS3Saver.acopy_thread``: same arguments, results and errors.
        """
        self._run(maintenance.copy_thread(self, source_thread_id, target_thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints and writes of runs, in every thread (a full scan).

        Sync twin of ``AsyncS3Saver.adelete_for_runs``: same arguments, results and errors.
        """
        self._run(maintenance.delete_for_runs(self, run_ids))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: keep the latest checkpoint per namespace, or delete them.

        Sync twin of ``AsyncS3Saver.aprune``: same arguments, results and errors.
        """
        self._run(maintenance.prune(self, thread_ids, strategy))

    def get_metadata(
        self, thread_id: str, *, checkpoint_ns: str = ""
    ) -> CheckpointMetadata | None:
        """Read the metadata of a thread's latest checkpoint, decoding nothing else.

        Sync twin of ``AsyncS3Saver.aget_metadata``: same arguments, results and errors.
        """
        return self._run(reads.latest_metadata(self, thread_id, checkpoint_ns))

    def get_transcript(
        self,
        thread_id: str,
        *,
        before: int | None = None,
        limit: int = 100,
        checkpoint_ns: str = "",
    ) -> TranscriptPage | None:
        """Read a page of a thread's transcript: the messages before a position.

        Sync twin of ``AsyncS3Saver.aget_transcript``: same arguments, results and errors.
        """
        return self._run(reads.transcript_page(self, thread_id, checkpoint_ns, before, limit))

    # --- running plans --------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        cursor = PlanCursor(plan)
        while (step := cursor.next()) is not None:
            self._perform(cursor, step)
        return cast(T, cursor.value)

    def _perform(self, cursor: PlanCursor, step: Step) -> None:
        try:
            if isinstance(step, Locked):
                with self._lock(step.thread_id, step.checkpoint_ns):
                    cursor.reply(self._run(step.plan))
            elif isinstance(step, Emit):
                raise TypeError("only list plans emit results")
            else:
                cursor.reply(self._store.execute(step))
        except S3SaverError as exc:
            cursor.fail(exc)

    def _lock(self, thread_id: str, checkpoint_ns: str) -> threading.Lock:
        with self._locks_mutex:
            lock: threading.Lock | None = self._locks.get((thread_id, checkpoint_ns))
            if lock is None:
                lock = self._locks[(thread_id, checkpoint_ns)] = threading.Lock()
            return lock

    # Last, so that ``list`` does not shadow the builtin in annotations above.

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """List checkpoints, newest (highest checkpoint id) first within each thread.

        Sync twin of ``AsyncS3Saver.alist``: same arguments, results and errors.
        """
        cursor = PlanCursor(
            reads.list_checkpoints(self, config, filter=filter, before=before, limit=limit)
        )
        while (step := cursor.next()) is not None:
            if isinstance(step, Emit):
                yield step.value
            else:
                self._perform(cursor, step)
