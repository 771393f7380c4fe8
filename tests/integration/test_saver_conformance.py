"""LangGraph's checkpointer conformance suite, all 8 capabilities, against a real S3 server.

Run on ``AsyncS3Saver`` and on the sync ``S3Saver`` (behind ``ThreadedS3Saver``,
which only moves its calls to a worker thread, so the suite drives the sync code).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import boto3
import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability

from shared.checkpoint import AsyncS3Saver
from shared.checkpoint._s3 import CLIENT_CONFIG
from tests.helpers import ThreadedS3Saver

ALL = {cap.value for cap in Capability}


@pytest.mark.parametrize("variant", ["async", "sync"])
async def test_every_capability_passes(s3_endpoint: str, s3_bucket: str, variant: str) -> None:
    client_args: dict[str, Any] = {
        "endpoint_url": s3_endpoint, "region_name": "us-east-1", "config": CLIENT_CONFIG}
    sync_client = boto3.client("s3", **client_args)

    async with aioboto3.Session().client("s3", **client_args) as async_client:

        @checkpointer_test(name=f"S3 saver ({variant})")
        async def s3_saver() -> AsyncIterator[Any]:
            # A fresh prefix per capability suite, as a fresh database would be:
            # delete_for_runs scans every thread under its prefix.
            prefix = f"{variant}-{uuid.uuid4().hex[:8]}/"
            if variant == "async":
                saver: Any = AsyncS3Saver(async_client, s3_bucket, prefix)
                await saver.setup()
            else:
                saver = ThreadedS3Saver(sync_client, s3_bucket, prefix)
                await saver.asetup()
            yield saver

        report = await validate(s3_saver, capabilities=ALL)

    for name in sorted(ALL):
        result = report.results[name]
        print(f"{variant} {name}: {result.tests_passed} passed, {result.tests_failed} failed")
    failures = {name: report.results[name].failures for name in ALL}
    # Every capability was run, each ran cases, and every case passed.
    assert all(report.results[name].detected for name in ALL), failures
    assert all(report.results[name].tests_passed > 0 for name in ALL), failures
    assert all(report.results[name].tests_failed == 0 for name in ALL), failures
    assert report.passed_all_base() and report.passed_all(), failures
