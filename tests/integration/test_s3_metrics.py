"""S3 requests and errors counted through botocore's events, on a real S3 server."""

from __future__ import annotations

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from prometheus_client import REGISTRY

from shared.storage import count_requests
from tests.servers import free_port


def counted(name: str, operation: str) -> float:
    return REGISTRY.get_sample_value(name, {"operation": operation}) or 0.0


async def test_requests_and_error_answers_are_counted(s3_endpoint: str, s3_bucket: str) -> None:
    async with aioboto3.Session().client("s3", endpoint_url=s3_endpoint,
                                         region_name="us-east-1") as client:
        count_requests(client)
        requests = counted("chat_s3_requests_total", "GetObject")
        errors = counted("chat_s3_errors_total", "GetObject")
        await client.put_object(Bucket=s3_bucket, Key="here", Body=b"x")
        await client.get_object(Bucket=s3_bucket, Key="here")
        with pytest.raises(ClientError):
            await client.get_object(Bucket=s3_bucket, Key="not-here")

    assert counted("chat_s3_requests_total", "GetObject") - requests == 2
    assert counted("chat_s3_errors_total", "GetObject") - errors == 1


async def test_a_request_that_gets_no_answer_is_an_error() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with aioboto3.Session().client(
            "s3", endpoint_url=closed, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1)) as client:
        count_requests(client)
        errors = counted("chat_s3_errors_total", "HeadBucket")
        with pytest.raises(EndpointConnectionError):
            await client.head_bucket(Bucket="any")

    assert counted("chat_s3_errors_total", "HeadBucket") - errors == 1
