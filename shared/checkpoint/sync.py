"""``S3Saver``: LangGraph checkpoints in S3 through one boto3 client (sync).

All decisions live in ``_plans`` (shared with ``AsyncS3Saver``); this module
only performs their requests. Safe to share between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar, cast

import boto3
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import _plans as plans
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
    ) -> Iterator[Self]:
        """Open a saver on ``s3://BUCKET/PREFIX`` for the life of the context.

        Args:
            conn_string: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``.
            endpoint_url: A non-AWS endpoint (MinIO, moto...), or ``None``.
            region_name: The region, or ``None`` for the AWS default.
            serde: Serializer; the default never unpickles.
            keep_last: Keep this many checkpoints per thread; ``None`` keeps all.
            retry: Retries of throttled or failed requests.
            encryption_key: AES key sealing every object (AES-GCM), or ``None``.
            transcript: The messages channel to keep a transcript of, or ``None``.
            segment_size: Messages per sealed transcript segment.

        Yields:
            The saver.

        Raises:
            ValueError: If the connection string is malformed.
        """
        bucket, prefix = parse_conn_string(conn_string)
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region_name, config=CLIENT_CONFIG
        )
        try:
            yield cls(client, bucket, prefix, serde=serde, keep_last=keep_last, retry=retry,
                encryption_key=encryption_key, transcript=transcript, segment_size=segment_size,
            )
        finally:
            client.close()

    def setup(self) -> None:
        """Check that the bucket exists and answers; creates nothing.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        self._run(plans.setup(self))

    def ping(self) -> None:
        """Cheap readiness probe: one HEAD of the bucket.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        self._run(plans.ping(self))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch one checkpoint: ``checkpoint_id`` from the config, else the latest.

        Args:
            config: ``configurable`` holds ``thread_id``, optionally
                ``checkpoint_ns`` and ``checkpoint_id``.

        Returns:
            The checkpoint with its pending writes, or ``None`` if there is none.

        Raises:
            ValueError: If an id in the config is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return self._run(plans.get_tuple(self, config))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; with the highest id it becomes the latest.

        Args:
            config: Target thread/namespace; its ``checkpoint_id`` is the parent.
            checkpoint: The checkpoint, with all its channel values.
            metadata: Its metadata.
            new_versions: Channels whose version changed.

        Returns:
            The config of the stored checkpoint.

        Raises:
            ValueError: If an id is not a safe id.
            CheckpointConflict: If another writer moved the thread since this
                saver read it (nothing is stored then).
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return self._run(plans.put(self, config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes of one task against a checkpoint.

        Args:
            config: Names the thread, namespace and checkpoint.
            writes: ``(channel, value)`` pairs.
            task_id: The task that made them.
            task_path: The task's path, used to order pending writes.

        Raises:
            ValueError: If an id is not safe or the config has no checkpoint_id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        self._run(plans.put_writes(self, config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread, in all namespaces.

        Args:
            thread_id: The thread.

        Raises:
            ValueError: If the thread id is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        self._run(plans.delete_thread(self, thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread to another, in all namespaces.

        Args:
            source_thread_id: The thread to copy.
            target_thread_id: The thread to copy into (what it holds is kept).

        Raises:
            ValueError: If a thread id is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        self._run(plans.copy_thread(self, source_thread_id, target_thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints and writes of runs, in every thread (a full scan).

        Args:
            run_ids: The runs (metadata ``run_id``).

        Raises:
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        self._run(plans.delete_for_runs(self, run_ids))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: keep the latest checkpoint per namespace, or delete them.

        Args:
            thread_ids: The threads.
            strategy: ``"keep_latest"`` or ``"delete"``.

        Raises:
            TypeError: If ``thread_ids`` is a single string.
            ValueError: If the strategy is unknown or an id is not safe.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        self._run(plans.prune(self, thread_ids, strategy))

    def get_metadata(
        self, thread_id: str, *, checkpoint_ns: str = ""
    ) -> CheckpointMetadata | None:
        """Read the metadata of a thread's latest checkpoint, decoding nothing else.

        Costs one GET of the head (304 if this saver holds it already).

        Args:
            thread_id: The thread.
            checkpoint_ns: The namespace.

        Returns:
            The metadata, or ``None`` if the thread has no checkpoint.

        Raises:
            ValueError: If the thread id is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return self._run(plans.latest_metadata(self, thread_id, checkpoint_ns))

    def get_transcript(
        self,
        thread_id: str,
        *,
        before: int | None = None,
        limit: int = 100,
        checkpoint_ns: str = "",
    ) -> TranscriptPage | None:
        """Read a page of a thread's transcript: the messages before a position.

        Costs one GET of the head (304 if this saver holds it already) and at
        most one of a sealed segment, whatever the transcript's length; the
        page holds fewer than ``limit`` messages when it reaches the start of
        that segment. ``page.start`` is the ``before`` of the page before it.

        Args:
            thread_id: The thread.
            before: Position (0-based, in the whole transcript) the page ends
                before; ``None`` for the newest messages.
            limit: At most this many messages.
            checkpoint_ns: The namespace.

        Returns:
            The page, oldest first, with the latest checkpoint's metadata; or
            ``None`` if the thread has no checkpoint.

        Raises:
            ValueError: If the saver keeps no transcript, or an argument is invalid.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return self._run(plans.transcript_page(self, thread_id, checkpoint_ns, before, limit))

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

        Args:
            config: Restricts to a thread, and to a namespace if
                ``checkpoint_ns`` is present, and to one id if
                ``checkpoint_id`` is. ``None`` lists every thread.
            filter: Metadata keys and the values they must equal.
            before: Only checkpoints with an id lower than this config's.
            limit: At most this many results.

        Yields:
            Matching checkpoint tuples.

        Raises:
            ValueError: If an id in the config is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        cursor = PlanCursor(
            plans.list_checkpoints(self, config, filter=filter, before=before, limit=limit)
        )
        while (step := cursor.next()) is not None:
            if isinstance(step, Emit):
                yield step.value
            else:
                self._perform(cursor, step)
