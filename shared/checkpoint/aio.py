"""``AsyncS3Saver``: LangGraph checkpoints in S3 through one aiobotocore client.

Cost (requests to S3): reading the latest checkpoint is a GET of the small
head object plus a GET of the checkpoint (plus one of its pending writes when
the head says there are some); ``aput`` is a PUT of the checkpoint and a
conditional PUT of the head. Nothing on that path LISTs or grows with the
length of the conversation.

Concurrency: the head is only replaced with ``IfMatch=<the ETag this saver
last saw>`` (or created with ``IfNoneMatch="*"``), so a writer that read the
thread before someone else moved it gets ``CheckpointConflict`` instead of
silently forking the conversation. One saver's calls on one (thread,
namespace) are serialised by a lock, so a single writer never conflicts with
itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Self

import aioboto3
from botocore.config import Config
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ._s3 import ObjectStore
from ._views import Head, Views
from .base import (
    BaseS3Saver,
    WriteRecord,
    checkpoint_config,
    config_target,
    dump_head,
    dump_write_records,
    load_head,
    load_write_records,
    merge_writes,
    parse_conn_string,
    validate_id,
)
from .errors import CheckpointConflict, S3SaverError, S3Unavailable

# Fail fast enough for a chat turn; "standard" retries back off on 5xx/SlowDown.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=64,
)
_LIST_BATCH = 16
_WRITE_ATTEMPTS = 5


class AsyncS3Saver(BaseS3Saver):
    """LangGraph checkpoint saver storing threads as S3 objects (async only).

    Prefer ``from_conn_string``, which owns the client. See ``base`` for the
    key layout and ``errors`` for what can be raised.

    Args:
        client: An open aiobotocore S3 client; the caller closes it.
        bucket: The bucket.
        prefix: Key prefix (may be empty), normalised to end in one ``/``.
        serde: Serializer; the default never unpickles.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(prefix=prefix, serde=serde)
        self._store = ObjectStore(client, bucket)
        # Shared, not copied, by the clones LangGraph makes with ``with_allowlist``.
        self._views = Views()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        *,
        serde: SerializerProtocol | None = None,
    ) -> AsyncIterator[Self]:
        """Open a saver on ``s3://BUCKET/PREFIX`` for the life of the context.

        Credentials come from the standard AWS chain (environment, profile,
        instance role...). One client is opened on entry and closed on exit.

        Args:
            conn_string: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``.
            endpoint_url: A non-AWS endpoint (MinIO, moto...), or ``None``.
            region_name: The region, or ``None`` for the AWS default.
            serde: Serializer; the default never unpickles.

        Yields:
            The saver.

        Raises:
            ValueError: If the connection string is malformed.
        """
        bucket, prefix = parse_conn_string(conn_string)
        session = aioboto3.Session()
        async with session.client(
            "s3", endpoint_url=endpoint_url, region_name=region_name, config=_CLIENT_CONFIG
        ) as client:
            yield cls(client, bucket, prefix, serde=serde)

    @property
    def client(self) -> Any:
        """The underlying aiobotocore S3 client (e.g. to register event hooks)."""
        return self._store.client

    async def setup(self) -> None:
        """Check that the bucket exists and answers; creates nothing.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        bucket = self._store.bucket
        try:
            await self._store.head_bucket()
        except S3Unavailable as exc:
            raise S3Unavailable(f"S3 is unreachable for bucket {bucket!r}: {exc}") from exc
        except S3SaverError as exc:
            raise S3SaverError(
                f"S3 bucket {bucket!r} is missing or not accessible: {exc}"
            ) from exc

    async def aping(self) -> None:
        """Cheap readiness probe: one HEAD of the bucket.

        Raises:
            S3Unavailable: If S3 cannot be reached or is failing.
            S3SaverError: If the bucket is missing or not accessible.
        """
        await self._store.head_bucket()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch one checkpoint: ``checkpoint_id`` from the config, else the latest.

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
        thread_id, ns, checkpoint_id = config_target(config)
        if checkpoint_id is not None:
            return await self._read_tuple(thread_id, ns, checkpoint_id, fetch_writes=True)
        # Under the lock, so a reply to this GET cannot overwrite the view
        # left by one of our own concurrent head writes.
        async with self._views.lock(thread_id, ns):
            head = await self._fetch_head(thread_id, ns)
            self._views.remember(thread_id, ns, head)
        if head is None:
            return None
        found = await self._read_tuple(
            thread_id, ns, head.checkpoint_id, fetch_writes=head.has_writes
        )
        if found is None:
            raise S3SaverError(
                f"head of thread {thread_id!r} (ns {ns!r}) names missing checkpoint "
                f"{head.checkpoint_id!r}"
            )
        return found

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """List checkpoints, newest (highest checkpoint id) first.

        One LIST of the thread (or namespace, or whole prefix), then GETs in
        small concurrent batches until ``limit`` results matched.

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
        if limit is not None and limit <= 0:
            return
        prefix, want_ns, want_id = self._list_scope(config)
        before_id = (before or {}).get("configurable", {}).get("checkpoint_id")
        parsed = [p for k in await self._store.list_keys(prefix) if (p := self.keys.parse(k))]
        with_writes = {
            (p.thread_id, p.checkpoint_ns, p.checkpoint_id) for p in parsed if p.kind == "writes"
        }
        candidates = sorted(
            (
                (p.checkpoint_id, p.thread_id, p.checkpoint_ns)
                for p in parsed
                if p.kind == "checkpoint"
                and p.checkpoint_id is not None
                and (want_ns is None or p.checkpoint_ns == want_ns)
                and (want_id is None or p.checkpoint_id == want_id)
                and (not before_id or p.checkpoint_id < before_id)
            ),
            reverse=True,
        )
        remaining = limit
        for start in range(0, len(candidates), _LIST_BATCH):
            found = await asyncio.gather(
                *(
                    self._read_tuple(
                        thread_id,
                        ns,
                        cid,
                        fetch_writes=(thread_id, ns, cid) in with_writes,
                        metadata_filter=filter,
                    )
                    for cid, thread_id, ns in candidates[start : start + _LIST_BATCH]
                )
            )
            for tup in found:
                if tup is None:
                    continue
                yield tup
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and make it the latest of its thread and namespace.

        Args:
            config: Target thread/namespace; its ``checkpoint_id`` is the parent.
            checkpoint: The checkpoint, with all its channel values.
            metadata: Its metadata.
            new_versions: Unused: every checkpoint object holds all its values.

        Returns:
            The config of the stored checkpoint.

        Raises:
            ValueError: If an id is not a safe id.
            CheckpointConflict: If another writer moved the thread's head since
                this saver last read it (the checkpoint is then removed again).
            S3Unavailable: If S3 is down.
            S3SaverError: On other storage failures.
        """
        thread_id, ns, parent_id = config_target(config)
        checkpoint_id = validate_id(checkpoint["id"], "checkpoint_id")
        body = self._dump_checkpoint(
            checkpoint, get_checkpoint_metadata(config, metadata), parent_id
        )
        key = self.keys.checkpoint(thread_id, ns, checkpoint_id)
        async with self._views.lock(thread_id, ns):
            # Checkpoint first: a reader must never find a head naming a missing object.
            await self._store.put(key, body)
            try:
                await self._move_head(thread_id, ns, checkpoint_id, parent_id)
            except CheckpointConflict:
                with suppress(S3SaverError):
                    await self._store.delete([key])
                raise
        return checkpoint_config(thread_id, ns, checkpoint_id)

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
        thread_id, ns, checkpoint_id = config_target(config)
        if checkpoint_id is None:
            raise ValueError("aput_writes needs config['configurable']['checkpoint_id']")
        new = self._dump_writes(writes, task_id, task_path)
        async with self._views.lock(thread_id, ns):
            await self._merge_writes(
                self.keys.writes(thread_id, ns, checkpoint_id),
                new,
                # Usually the first writes of a checkpoint: create without a GET.
                probably_absent=not self._views.has_writes(thread_id, ns, checkpoint_id),
            )
            self._views.note_writes(thread_id, ns, checkpoint_id)
            await self._flag_writes(thread_id, ns, checkpoint_id)

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
        thread_id = config_target({"configurable": {"thread_id": thread_id}})[0]
        keys = await self._store.list_keys(self.keys.thread(thread_id))
        # Heads first, so readers stop finding the thread before its checkpoints go.
        keys.sort(key=lambda k: not k.endswith("/head"))
        await self._store.delete(keys)
        self._views.forget_thread(thread_id)

    # --- internals ---------------------------------------------------------

    async def _fetch_head(self, thread_id: str, ns: str) -> Head | None:
        found = await self._store.get(self.keys.head(thread_id, ns))
        if found is None:
            return None
        checkpoint_id, has_writes = load_head(found[0])
        return Head(checkpoint_id, found[1], has_writes)

    async def _move_head(
        self, thread_id: str, ns: str, checkpoint_id: str, parent_id: str | None
    ) -> None:
        key = self.keys.head(thread_id, ns)
        seen = self._views.head(thread_id, ns)
        # LangGraph may have stored this checkpoint's writes before the checkpoint.
        has_writes = self._views.has_writes(thread_id, ns, checkpoint_id)
        body = dump_head(checkpoint_id, has_writes)
        try:
            if seen is not None:
                etag = await self._store.put(key, body, if_match=seen.etag)
            else:
                etag = await self._blind_put_head(thread_id, ns, body, parent_id)
        except CheckpointConflict as exc:
            raise CheckpointConflict(
                f"thread {thread_id!r} (ns {ns!r}) was changed by another writer since "
                "this saver read it; reload the latest checkpoint and retry"
            ) from exc
        self._views.remember(thread_id, ns, Head(checkpoint_id, etag, has_writes))

    async def _blind_put_head(
        self, thread_id: str, ns: str, body: bytes, parent_id: str | None
    ) -> str:
        # This saver never saw the head (new thread, or forgotten): create it, or
        # move it only if the new checkpoint builds on the current one.
        key = self.keys.head(thread_id, ns)
        try:
            return await self._store.put(key, body, if_none_match=True)
        except CheckpointConflict:
            current = await self._fetch_head(thread_id, ns)
            if current is None or current.checkpoint_id != parent_id:
                raise
            return await self._store.put(key, body, if_match=current.etag)

    async def _merge_writes(
        self, key: str, new: list[WriteRecord], *, probably_absent: bool
    ) -> None:
        # Read-merge-write under ETag conditions; retrying is safe as merging is idempotent.
        existing: list[WriteRecord] = []
        etag: str | None = None
        for _ in range(_WRITE_ATTEMPTS):
            if not probably_absent:
                found = await self._store.get(key)
                existing, etag = (load_write_records(found[0]), found[1]) if found else ([], None)
            merged = merge_writes(existing, new)
            if merged is None:
                return
            try:
                await self._store.put(
                    key, dump_write_records(merged), if_match=etag, if_none_match=etag is None
                )
                return
            except CheckpointConflict:
                probably_absent = False
        raise CheckpointConflict(f"pending writes at {key!r} kept changing; gave up")

    async def _flag_writes(self, thread_id: str, ns: str, checkpoint_id: str) -> None:
        # Mark the head when its checkpoint gets writes, so latest reads fetch them.
        seen = self._views.head(thread_id, ns)
        head = seen or await self._fetch_head(thread_id, ns)
        if head is None or head.checkpoint_id != checkpoint_id or head.has_writes:
            return
        try:
            etag = await self._store.put(
                self.keys.head(thread_id, ns), dump_head(checkpoint_id, True), if_match=head.etag
            )
        except CheckpointConflict:
            # Someone else moved the head: the flag no longer matters, and keeping
            # the old view makes this saver's next aput report the conflict.
            return
        if seen is not None:
            self._views.remember(thread_id, ns, head._replace(etag=etag, has_writes=True))

    async def _read_tuple(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        *,
        fetch_writes: bool,
        metadata_filter: dict[str, Any] | None = None,
    ) -> CheckpointTuple | None:
        checkpoint_get = self._store.get(self.keys.checkpoint(thread_id, ns, checkpoint_id))
        if fetch_writes:
            found, writes_found = await asyncio.gather(
                checkpoint_get, self._store.get(self.keys.writes(thread_id, ns, checkpoint_id))
            )
        else:
            found, writes_found = await checkpoint_get, None
        if found is None:
            return None
        stored = self._load_checkpoint(found[0], metadata_filter)
        if stored is None:
            return None
        records = load_write_records(writes_found[0]) if writes_found else []
        parent = stored.parent_id
        return CheckpointTuple(
            config=checkpoint_config(thread_id, ns, checkpoint_id),
            checkpoint=stored.checkpoint,
            metadata=stored.metadata,
            parent_config=checkpoint_config(thread_id, ns, parent) if parent else None,
            pending_writes=self._load_writes(records),
        )

    def _list_scope(self, config: RunnableConfig | None) -> tuple[str, str | None, str | None]:
        if config is None:
            return self.keys.prefix, None, None
        thread_id, _, checkpoint_id = config_target(config)
        ns = config.get("configurable", {}).get("checkpoint_ns")
        if ns is None:
            return self.keys.thread(thread_id), None, checkpoint_id
        return self.keys.namespace(thread_id, ns), ns, checkpoint_id
