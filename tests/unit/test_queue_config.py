from __future__ import annotations

from shared.queue import (
    CLEANUP_TASK,
    MAINTENANCE_QUEUE,
    QUEUE,
    TURN_TASK,
    make_celery,
    nudge_lost_after,
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


def test_the_broker_is_redis_url_unless_celery_broker_url_names_another() -> None:
    on_redis = make_celery(Settings(_env_file=None, REDIS_URL="redis://state:6379/0"))  # type: ignore[call-arg]
    on_rabbit = make_celery(Settings(  # type: ignore[call-arg]
        _env_file=None, REDIS_URL="redis://state:6379/0",
        CELERY_BROKER_URL="amqp://guest:guest@rabbit:5672//"))

    assert on_redis.conf.broker_url == "redis://state:6379/0"
    assert on_rabbit.conf.broker_url == "amqp://guest:guest@rabbit:5672//"
    # Ack emulation is an option of kombu's Redis transport only.
    assert on_rabbit.conf.broker_transport_options == {}
