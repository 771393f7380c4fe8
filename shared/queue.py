"""The Celery app's configuration, built in one place for the gateway and the workers.

The gateway only sends tasks by name, so it builds the same app without
importing the worker code (no LangGraph, no LLM client in the gateway).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from shared.settings import Settings

TURN_TASK = "chat.run_turn"
CLEANUP_TASK = "chat.cleanup"
QUEUE = "chat"
# Beat's task goes to its own queue, which every worker also consumes: the
# Redis transport takes from its queues in turn, so cleanup is not stuck
# behind a backlog of chat turns.
MAINTENANCE_QUEUE = "chat-maintenance"

# The longest countdown a turn's retry may ask for.
MAX_COUNTDOWN = 60


def nudge_lost_after(settings: Settings) -> int:
    """Seconds after which a job still queued is nudged again, even behind a backlog.

    A task message is only a nudge: the job itself waits in its thread's
    inbox. A nudge can be lost: the gateway may die between recording a job
    and sending its task; and Redis as a broker does not keep messages a
    worker has taken (no ack emulation: it would cost eight Redis commands a
    turn), so a worker that dies loses the nudges it had reserved or was
    holding for a retry. The recovery sweep sends them again. Longer than a
    whole turn plus the longest countdown, so a live worker's nudge is
    rarely doubled.
    """
    return settings.TURN_TIME_LIMIT + MAX_COUNTDOWN + 30


def broker_url(settings: Settings) -> str:
    return settings.CELERY_BROKER_URL or settings.REDIS_URL


def celery_config(settings: Settings) -> dict[str, Any]:
    url = broker_url(settings)
    return {
        "broker_url": url,
        # On Redis, the nudges a worker takes are not kept until acknowledged
        # (see nudge_lost_after): the thread's inbox and the recovery sweep
        # are what make a job survive its worker. RabbitMQ keeps them anyway.
        "broker_transport_options": {"ack_emulation": False} if url.startswith("redis") else {},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QUEUE,
        "task_queues": [Queue(QUEUE), Queue(MAINTENANCE_QUEUE)],
        "task_routes": {CLEANUP_TASK: {"queue": MAINTENANCE_QUEUE}},
        # Job outcomes live in our own records (shared.store.jobs): no result backend,
        # so sending a task does not subscribe to its result either.
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # The gateway must answer 503 quickly when the broker is down, not hang.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.1,
                                      "interval_step": 0.2, "interval_max": 0.5},
        "broker_connection_timeout": 2,
        # Turns wait on the LLM: one process runs many at once, each task in a
        # thread handing its coroutine to the process's event loop
        # (worker/runtime.py). Time limits are asyncio's, inside that loop.
        "worker_pool": "threads",
        "worker_concurrency": settings.WORKER_CONCURRENCY,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "beat_schedule": {
            "cleanup-idle-conversations": {
                "task": CLEANUP_TASK,
                "schedule": float(settings.CLEANUP_INTERVAL_SECONDS),
                # Ticks missed while no worker ran would only repeat one another.
                "options": {"expires": float(settings.CLEANUP_INTERVAL_SECONDS)},
            },
        },
    }


def make_celery(settings: Settings, name: str = "chat") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def send_turn(app: Celery, job_id: str, producer: Any = None) -> None:
    """Sends the nudge that makes a worker run the next turn of `job_id`'s
    thread (through `producer`, if given: a batch's). Blocking (kombu's
    client): call it from a thread, not a loop."""
    app.send_task(TURN_TASK, args=[job_id], producer=producer)


def queue_depths(app: Celery) -> dict[str, int]:
    """Task messages waiting in each queue, as the broker counts them (what
    no worker has taken yet). Blocking, like send_turn."""
    depths = {}
    # A connection of its own each time: a pooled one that the broker dropped
    # would fail every later read. Callers read every few seconds at most.
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
        for name in (QUEUE, MAINTENANCE_QUEUE):
            # A passive declare only reads the queue. One never declared yet
            # (no worker has started) holds nothing; on RabbitMQ its error
            # closes the channel, so each queue gets a channel of its own.
            with conn.channel() as channel:
                try:
                    depths[name] = channel.queue_declare(name, passive=True).message_count
                except conn.channel_errors:
                    depths[name] = 0
    return depths
