"""The Celery app's configuration, built in one place for the gateway and the workers.

The gateway only sends tasks by name, so it builds the same app without
importing the worker code (no LangGraph, no LLM client in the gateway).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from celery import Celery
from kombu.entity import Queue
from kombu.serialization import dumps
from kombu.utils.json import dumps as json_dumps

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
    inbox. The transport does not keep messages a worker has taken (no ack
    emulation: it would cost eight Redis commands a turn), so a worker that
    dies loses the nudges it had reserved or was holding for a retry, and
    the recovery sweep sends them again. Longer than a whole turn plus the
    longest countdown, so a live worker's nudge is rarely doubled.
    """
    return settings.TURN_TIME_LIMIT + MAX_COUNTDOWN + 30


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.REDIS_URL,
        # The nudges a worker takes are not kept in Redis until acknowledged
        # (see nudge_lost_after): the thread's inbox and the recovery sweep
        # are what make a job survive its worker.
        "broker_transport_options": {"ack_emulation": False},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QUEUE,
        "task_queues": [Queue(QUEUE), Queue(MAINTENANCE_QUEUE)],
        "task_routes": {CLEANUP_TASK: {"queue": MAINTENANCE_QUEUE}},
        # Job outcomes live in our own records (shared.jobs): no result backend,
        # so sending a task does not subscribe to its result either.
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # The gateway must answer 503 quickly when Redis is down, not hang.
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


def turn_message(app: Celery, job_id: str) -> str:
    """The entry Celery's Redis transport would push on QUEUE for the turn
    task of `job_id` (protocol 2, JSON), for the gateway to push itself in
    the same script that accepts the job: the job and its nudge are queued
    together or not at all, in one round trip, with no publisher thread.

    Celery builds the task message; this does only what kombu's Redis
    channel adds to it (base64 body, delivery tag and routing).
    """
    headers, properties, body, _ = app.amqp.as_task_v2(job_id, TURN_TASK, args=[job_id])
    content_type, content_encoding, payload = dumps(body, serializer="json")
    properties.update(
        delivery_mode=2, priority=0, body_encoding="base64", delivery_tag=str(uuid.uuid4()),
        delivery_info={"exchange": "", "routing_key": QUEUE})
    message: str = json_dumps({"body": base64.b64encode(payload.encode()).decode(),
                               "content-encoding": content_encoding,
                               "content-type": content_type,
                               "headers": headers, "properties": properties})
    return message
