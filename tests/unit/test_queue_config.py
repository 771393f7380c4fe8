from __future__ import annotations

import base64
import json

from shared.queue import (
    CLEANUP_TASK,
    MAINTENANCE_QUEUE,
    QUEUE,
    TURN_TASK,
    make_celery,
    nudge_lost_after,
    turn_message,
)
from shared.settings import Settings


def test_beat_tasks_have_their_own_queue_and_workers_consume_both() -> None:
    app = make_celery(Settings(_env_file=None))  # type: ignore[call-arg]

    routes = app.conf.task_routes
    assert routes[CLEANUP_TASK]["queue"] == MAINTENANCE_QUEUE
    # Recovery is the workers' own timer, not beat's.
    assert [entry["task"] for entry in app.conf.beat_schedule.values()] == [CLEANUP_TASK]
    assert TURN_TASK not in routes
    assert {q.name for q in app.conf.task_queues} == {QUEUE, MAINTENANCE_QUEUE}


def test_reliability_settings() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    conf = make_celery(settings).conf

    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    # Taken nudges are not kept in Redis (the inbox and the sweep keep the jobs)...
    assert conf.broker_transport_options["ack_emulation"] is False
    # ...and a live worker's nudge is not doubled: longer than a whole turn.
    assert nudge_lost_after(settings) > settings.TURN_TIME_LIMIT + 60


def test_a_turn_message_is_what_a_worker_reads_as_the_turn_task() -> None:
    app = make_celery(Settings(_env_file=None))  # type: ignore[call-arg]

    raw = json.loads(turn_message(app, "job123"))
    body = json.loads(base64.b64decode(raw["body"]))

    assert raw["headers"]["task"] == TURN_TASK
    assert raw["headers"]["id"] == "job123"
    assert body[0] == ["job123"] and body[1] == {}
    assert raw["content-type"] == "application/json"
    assert raw["properties"]["delivery_info"]["routing_key"] == QUEUE
    assert raw["properties"]["body_encoding"] == "base64"
    assert raw["properties"]["delivery_tag"] != json.loads(
        turn_message(app, "job123"))["properties"]["delivery_tag"]
