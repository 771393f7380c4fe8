"""LangGraph's checkpointer conformance suite, run on AsyncS3Saver against a real S3 server."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES

from shared.checkpoint import AsyncS3Saver


async def test_base_capabilities_pass(s3_endpoint: str, s3_bucket: str) -> None:
    @checkpointer_test(name="AsyncS3Saver")
    async def s3_saver() -> AsyncIterator[AsyncS3Saver]:
        async with AsyncS3Saver.from_conn_string(
            f"s3://{s3_bucket}/conformance/", endpoint_url=s3_endpoint, region_name="us-east-1"
        ) as saver:
            await saver.setup()
            yield saver

    base = {cap.value for cap in BASE_CAPABILITIES}
    report = await validate(s3_saver, capabilities=base)

    for name in sorted(base):
        result = report.results[name]
        print(f"{name}: {result.tests_passed} passed, {result.tests_failed} failed")
    failures = {name: report.results[name].failures for name in base}
    assert all(report.results[name].tests_failed == 0 for name in base), failures
    assert report.passed_all_base(), failures
