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
from tests.e2e.test_chat import (  # noqa: F401  (run here again, on a Redis Cluster)
    test_cancel_a_running_job_stores_nothing,
    test_delete_removes_the_conversation,
    test_wait_mode_answers_with_the_reply,
)
from tests.e2e.test_edges import (  # noqa: F401
    test_a_cancel_either_wins_or_says_it_lost,
    test_delete_during_a_turn_wins,
)
from tests.e2e.test_queue import (  # noqa: F401
    test_a_stream_shows_reset_then_the_whole_reply_after_a_sigkill,
    test_a_worker_stopped_with_sigterm_finishes_its_running_turn_first,
    test_concurrent_messages_to_one_thread_apply_one_after_another,
    test_jobs_wait_out_an_s3_outage,
    test_messages_sent_one_after_another_are_stored_in_that_order,
    test_sigkilled_worker_turn_runs_again_elsewhere_and_is_stored_once,
)
from tests.e2e.test_stream import (  # noqa: F401
    test_cancel_a_queued_job_means_it_never_runs,
    test_cancel_a_running_stream_closes_the_llm_call,
    test_streamed_tokens_make_the_reply_that_is_stored,
    test_twenty_concurrent_streams_all_complete_in_order,
)
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
def broker(workdir: Path) -> Iterator[servers.Server]:
    server = servers.redis_server(workdir / "cluster-broker").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def faulty(workdir: Path, s3_endpoint: str, cluster: servers.RedisCluster,
               broker: servers.Server) -> Iterator[Stack]:
    with launch_faulty(workdir, s3_endpoint, "on-cluster", redis_url=cluster.url,
                       REDIS_CLUSTER="1",
                       CELERY_BROKER_URL=f"redis://127.0.0.1:{broker.port}/0") as stack:
        yield stack


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
