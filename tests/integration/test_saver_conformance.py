"""LangGraph's checkpointer conformance suite, all 8 capabilities, against a real S3 server.

Run on ``AsyncS3Saver`` and on the sync ``S3Saver`` (through an adapter that
only moves its calls to a worker thread, so the suite's async calls exercise
the sync code).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability

from shared.checkpoint import AsyncS3Saver, S3Saver

ALL = {cap.value for cap in Capability}
# Cases per capability in langgraph-checkpoint-conformance 0.0.2 (81 in all).
EXPECTED = {
    "put": 17, "put_writes": 10, "get_tuple": 10, "list": 16, "delete_thread": 5,
    "copy_thread": 8, "delete_for_runs": 7, "prune": 8,
}


class ThreadedS3Saver(S3Saver):
    """The sync saver behind the async API the suite calls, one thread hop per call."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


@pytest.mark.parametrize("variant", ["async", "sync"])
async def test_every_capability_passes(s3_endpoint: str, s3_bucket: str, variant: str) -> None:
    @checkpointer_test(name=f"S3 saver ({variant})")
    async def s3_saver() -> AsyncIterator[Any]:
        # A fresh prefix per capability suite, as a fresh database would be:
        # delete_for_runs scans every thread under its prefix.
        url = f"s3://{s3_bucket}/{variant}-{uuid.uuid4().hex[:8]}/"
        if variant == "async":
            async with AsyncS3Saver.from_conn_string(
                url, endpoint_url=s3_endpoint, region_name="us-east-1"
            ) as saver:
                await saver.setup()
                yield saver
        else:
            with ThreadedS3Saver.from_conn_string(
                url, endpoint_url=s3_endpoint, region_name="us-east-1"
            ) as sync_saver:
                sync_saver.setup()
                yield sync_saver

    report = await validate(s3_saver, capabilities=ALL)

    counts = {}
    for name in sorted(ALL):
        result = report.results[name]
        counts[name] = result.tests_passed
        print(f"{variant} {name}: {result.tests_passed} passed, {result.tests_failed} failed")
    failures = {name: report.results[name].failures for name in ALL}
    assert all(report.results[name].detected for name in ALL), failures
    assert all(report.results[name].tests_failed == 0 for name in ALL), failures
    assert counts == EXPECTED, failures
    assert report.passed_all_base() and report.passed_all(), failures
