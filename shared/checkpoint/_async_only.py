"""The sync half of LangGraph's saver API, which ``AsyncS3Saver`` does not offer.

Each method says which async one to call instead (LangGraph's base class
would only say "not implemented"). A class of its own, first among the
saver's bases, so that its ``list`` shadows nothing in the saver's body.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

_SYNC_MESSAGE = "AsyncS3Saver is async-only: use {} (or the sync S3Saver)"


class AsyncOnly:
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Not supported: use ``aget_tuple``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aget_tuple"))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Not supported: use ``alist``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("alist"))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Not supported: use ``aput``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aput"))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Not supported: use ``aput_writes``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aput_writes"))

    def delete_thread(self, thread_id: str) -> None:
        """Not supported: use ``adelete_thread``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("adelete_thread"))
