"""Session-wide servers shared by the integration and end-to-end tests, and
the key layout of a Redis Cluster for the tests that need it."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.settings import get_settings
from shared.store.keys import hash_tagged
from tests import servers

# Tests never reach AWS: fixed dummy credentials for every client they build.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_proc(workdir: Path) -> Iterator[servers.Server]:
    server = servers.redis_server(workdir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_proc: servers.Server) -> str:
    return f"redis://127.0.0.1:{redis_proc.port}/0"


@pytest.fixture(scope="session")
def redis_cluster(workdir: Path) -> Iterator[servers.RedisCluster]:
    cluster = servers.redis_cluster(workdir / "redis-cluster").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keys laid out for a Redis Cluster (hash-tagged), as with REDIS_CLUSTER=1."""
    monkeypatch.setenv("REDIS_CLUSTER", "1")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    hash_tagged.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        hash_tagged.cache_clear()


@pytest.fixture
async def kills_a_cluster_node() -> AsyncIterator[None]:
    """For a test that kills a node of a Redis Cluster: redis-py's cluster
    client leaves its sockets to that node to the event loop and the garbage
    collector, whose ResourceWarning (an error in this suite) would fail
    whichever test it happened to run in. Collected once the test is over and
    the loop has run its pending callbacks, their warning expected."""
    yield
    await asyncio.sleep(0.1)  # the loop lets go of the closed transports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="session")
def s3_proc(workdir: Path) -> Iterator[servers.Server]:
    server = servers.s3_server(workdir / "s3").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_proc: servers.Server) -> str:
    return f"http://127.0.0.1:{s3_proc.port}"


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket for one test."""
    return servers.create_bucket(s3_endpoint)
