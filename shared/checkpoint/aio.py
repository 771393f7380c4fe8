"""``AsyncS3Saver``: LangGraph checkpoints in S3 through one aiobotocore client.

All decisions live in the plans (``_plans``, ``_reads``, ``_puts`` and
``_maintenance``, shared with the sync ``S3Saver``); this module only
performs their requests. Costs, concurrency and layout: see ``_plans``,
``_cache`` and ``_layout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar, cast

import aioboto3
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
from ._async_only import AsyncOnly
from ._layout import parse_conn_string
from ._puts import Item
from ._requests import Emit, Locked, Plan, PlanCursor, Step
from ._s3 import CLIENT_CONFIG, AsyncStore, RetryPolicy
from .base import SEGMENT_SIZE, BaseS3Saver, TranscriptPage
from .errors import S3SaverError

T = TypeVar("T")


class AsyncS3Saver(AsyncOnly, BaseS3Saver):
    """LangGraph checkpoint saver storing threads as S3 objects (async).

    Prefer ``from_conn_string``, which owns the client; the constructor's
    arguments are ``BaseS3Saver``'s, with an aiobotocore client. One saver
    instance is one writer: a write fails with ``CheckpointConflict`` when
    another writer moved the thread since this saver last read or wrote it.
    """

    _store: AsyncStore

    def _open_store(self, client: Any, bucket: str, retry: RetryPolicy) -> AsyncStore:
        return AsyncStore(client, bucket, retry)

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
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
    ) -> AsyncIterator[Self]:
        """Open a saver on ``s3://BUCKET/PREFIX`` for the life of the context.

        Credentials come from the standard AWS chain (environment, profile,
        instance role...). One client is opened on entry and closed on exit.

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
            max_connections: Size of the client's connection pool: at least
                the requests in flight at once, or they queue for a connection.

        Yields:
            The saver.

        Raises:
            ValueError: If the connection string is malformed.
        """
        bucket, prefix = parse_conn_string(conn_string)
        session = aioboto3.Session()
        async with session.client(
            "s3", endpoint_url=endpoint_url, region_name=region_name,
            config=CLIENT_CONFIG.merge(Config(max_pool_connections=max_connections))
        ) as client:
            yield cls(client, bucket, prefix, serde=serde, keep_last=keep_last, retry=retry,
                encryption_key=encryption_key, transcript=transcript, segment_size=segment_size,
            )

    async def setup(self) -> None:
        """Check that the bucket exists and answers; creates nothing.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        await self._run(plans.setup(self))

    async def aping(self) -> None:
        """Cheap readiness probe: one HEAD of the bucket.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        await self._run(plans.ping(self))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch one checkpoint: ``checkpoint_id`` from the config, else the latest.

        Costs one GET of the head (304 if this saver holds it already). Never
        LISTs.

        Args:
            config: ``configurable`` holds ``thread_id``, optionally
                ``checkpoint_ns`` and ``checkpoint_id``.

        Returns:
            The checkpoint with its pending writes (in ``writes_sort_key``
            order), or ``None`` if there is none.

        Raises:
            ValueError: If an id in the config is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return await self._run(reads.get_tuple(self, config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """List checkpoints, newest (highest checkpoint id) first within each thread.

        Reads each namespace once (1-2 GETs); a LIST finds the namespaces when
        the config names none. Only the checkpoints yielded are decoded.

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
            reads.list_checkpoints(self, config, filter=filter, before=before, limit=limit)
        )
        while (step := cursor.next()) is not None:
            if isinstance(step, Emit):
                yield step.value
            else:
                await self._perform(cursor, step)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; with the highest id it becomes the latest.

        After a read of the thread by this saver, one conditional PUT of the
        head, plus one PUT of a transcript segment when the committed tail
        holds a full one. A value is stored once per version, and a list's
        elements once however many retained versions hold them.

        Args:
            config: Target thread/namespace; its ``checkpoint_id`` is the parent.
            checkpoint: The checkpoint, with all its channel values.
            metadata: Its metadata.
            new_versions: Channels whose version changed (values are stored
                by version, so this is implied by the checkpoint).

        Returns:
            The config of the stored checkpoint.

        Raises:
            ValueError: If an id is not a safe id.
            CheckpointConflict: If another writer moved the thread since this
                saver read it (nothing is stored then).
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        return await self._run(puts.put(self, config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes of one task against a checkpoint.

        Regular writes keep the first value stored per (task, index); writes to
        special channels (errors, interrupts...) replace earlier ones.

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
        await self._run(puts.put_writes(self, config, writes, task_id, task_path))

    async def aput_batch(self, items: Sequence[Item]) -> None:
        """Store several puts and writes (``PutItem``, ``WritesItem``) in order,
        with one conditional PUT of each head they touch: they land together
        or not at all.

        Raises:
            ValueError: If an id is not safe, or writes name no checkpoint.
            CheckpointConflict: If another writer moved a thread since this
                saver read it (nothing of that thread is stored then).
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        await self._run(puts.put_batch(self, items))

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread, in all namespaces.

        Args:
            thread_id: The thread; other threads sharing its prefix
                (``t1`` vs ``t10``) are untouched.

        Raises:
            ValueError: If the thread id is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        await self._run(maintenance.delete_thread(self, thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread to another, in all namespaces.

        What the target already holds is kept; a checkpoint with the same id
        is taken from the source.

        Args:
            source_thread_id: The thread to copy.
            target_thread_id: The thread to copy into.

        Raises:
            ValueError: If a thread id is not a safe id.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        await self._run(maintenance.copy_thread(self, source_thread_id, target_thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints and writes of runs (metadata ``run_id``), everywhere.

        An administrative scan: it reads every thread under the prefix.

        Args:
            run_ids: The runs.

        Raises:
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        await self._run(maintenance.delete_for_runs(self, run_ids))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: keep the latest checkpoint per namespace, or delete them.

        ``"keep_latest"`` also keeps the ancestors whose writes rebuild a
        DeltaChannel of the latest checkpoint. Transcripts are kept whole.

        Args:
            thread_ids: The threads.
            strategy: ``"keep_latest"`` or ``"delete"``.

        Raises:
            TypeError: If ``thread_ids`` is a single string.
            ValueError: If the strategy is unknown or an id is not safe.
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        await self._run(maintenance.prune(self, thread_ids, strategy))

    async def aget_metadata(
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
        return await self._run(reads.latest_metadata(self, thread_id, checkpoint_ns))

    async def aget_transcript(
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
        return await self._run(reads.transcript_page(self, thread_id, checkpoint_ns, before, limit))

    # --- running plans --------------------------------------------------

    async def _run(self, plan: Plan[T]) -> T:
        cursor = PlanCursor(plan)
        while (step := cursor.next()) is not None:
            await self._perform(cursor, step)
        return cast(T, cursor.value)

    async def _perform(self, cursor: PlanCursor, step: Step) -> None:
        try:
            if isinstance(step, Locked):
                async with self._lock(step.thread_id, step.checkpoint_ns):
                    cursor.reply(await self._run(step.plan))
            elif isinstance(step, Emit):
                raise TypeError("only list plans emit results")
            else:
                cursor.reply(await self._store.execute(step))
        except S3SaverError as exc:
            cursor.fail(exc)

    def _lock(self, thread_id: str, checkpoint_ns: str) -> asyncio.Lock:
        lock: asyncio.Lock | None = self._locks.get((thread_id, checkpoint_ns))
        if lock is None:
            lock = self._locks[(thread_id, checkpoint_ns)] = asyncio.Lock()
        return lock
