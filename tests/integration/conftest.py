"""Fixtures of the integration tests: clients of the session's S3 server, a job store,
savers of both variants under a prefix of their own, and a Redis of either kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import boto3
import pytest
from redis.asyncio import Redis

from shared.checkpoint import AsyncS3Saver
from shared.checkpoint._s3 import CLIENT_CONFIG
from shared.store.jobs import JobStore
from tests import servers
from tests.helpers import VARIANTS, ThreadedS3Saver


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    """One bucket per module; each test works under its own prefix."""
    return servers.create_bucket(s3_endpoint)


@pytest.fixture(scope="module")
def sync_client(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        config=CLIENT_CONFIG)


@pytest.fixture(scope="module")
async def async_client(s3_endpoint: str) -> AsyncIterator[Any]:
    async with aioboto3.Session().client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", config=CLIENT_CONFIG
    ) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    return f"{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def make_saver(request: pytest.FixtureRequest, sync_client: Any, async_client: Any,
               bucket: str, prefix: str) -> Any:
    """Builds savers of this test's variant on the shared clients, under its prefix."""
    variant = getattr(request, "param", "async")

    def build(**options: Any) -> Any:
        if variant == "async":
            return AsyncS3Saver(async_client, bucket, prefix, **options)
        return ThreadedS3Saver(sync_client, bucket, prefix, **options)

    return build


@pytest.fixture(params=VARIANTS)
def saver(request: pytest.FixtureRequest, sync_client: Any, async_client: Any, bucket: str,
          prefix: str) -> Any:
    if request.param == "async":
        return AsyncS3Saver(async_client, bucket, prefix)
    return ThreadedS3Saver(sync_client, bucket, prefix)




@pytest.fixture(params=["single", "cluster"])
def server(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """A Redis URL, and whether it is a cluster's: the session's redis-server,
    then its Redis Cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, True
    return request.getfixturevalue("redis_url"), False


@pytest.fixture
async def jobs(redis_url: str) -> AsyncIterator[JobStore]:
    """A job store on the session's redis-server."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield JobStore(redis, ttl=86400)
    await redis.aclose()
