"""The state on a Redis Cluster (`REDIS_CLUSTER=1`), Celery's broker on a plain Redis.

The tests of queueing, order, crashes, cancels, deletes and streaming that
test_rabbitmq.py runs again run here too, imported from their modules,
against one stack whose state is on a Redis Cluster of three masters of its
own, and whose broker is a redis-server apart (kombu cannot queue on a
cluster). The rest of the suite runs on one Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.e2e.rerun import *  # noqa: F403  (run here again, on a Redis Cluster)
from tests.stack import Stack, launch_faulty

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[servers.RedisCluster]:
    own = servers.redis_cluster(workdir / "stack-cluster").start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def faulty(workdir: Path, s3_endpoint: str, cluster: servers.RedisCluster) -> Iterator[Stack]:
    broker = servers.redis_server(workdir / "cluster-broker").start()
    try:
        with launch_faulty(workdir, s3_endpoint, "on-cluster", redis_url=cluster.url,
                           REDIS_CLUSTER="1",
                           CELERY_BROKER_URL=f"redis://127.0.0.1:{broker.port}/0") as stack:
            yield stack
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def stack(faulty: Stack) -> Stack:
    """The tests written for the shared stack run on this one."""
    return faulty


def test_the_stack_is_ready_on_a_cluster(faulty: Stack) -> None:
    for client in (faulty.client, faulty.second):
        assert client is not None
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"redis": "ok", "s3": "ok"}


def test_turns_travel_through_the_broker_and_the_state_spans_the_nodes(
        faulty: Stack, cluster: servers.RedisCluster) -> None:
    replies = [faulty.client.post("/chat", json={"message": f"node {n}"})
               for n in range(6)]

    assert [r.status_code for r in replies] == [200] * 6, replies[-1].text
    with faulty.store() as store:
        # Kombu's Redis transport keeps its queues and bindings under these names.
        assert not store.exists("chat", "chat-maintenance", "_kombu.binding.chat")
        holding = {port for port in cluster.ports
                   if store.dbsize(target_nodes=store.get_node("127.0.0.1", port))}
    assert holding == set(cluster.ports)
