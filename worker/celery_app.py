"""The Celery app the worker and beat processes run: `celery -A worker.celery_app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from shared.graphs import load_registry
from shared.logging import configure_logging
from shared.queue import make_celery
from shared.settings import get_settings

settings = get_settings()
configure_logging(settings)
# Every declared graph is imported now: one that cannot be stops the process.
load_registry(settings.LANGGRAPH_CONFIG, settings.CHAT_GRAPH_ID)
app = make_celery(settings, "worker")
app.conf.imports = ("worker.tasks",)


@worker_init.connect
def _open_runtime(**_: Any) -> None:
    # Build the loop and its clients before the pool takes tasks, not during
    # the first one. The pool is Celery's threads pool (shared/queue.py): a
    # loop thread would not survive prefork's fork.
    from worker.runtime import get_runtime

    get_runtime()


@worker_shutdown.connect
def _close_runtime(**_: Any) -> None:
    from worker.runtime import close_runtime

    close_runtime()


_recovery: list[Any] = []


@worker_ready.connect
def _start_recovery(**_: Any) -> None:
    # In the main process, once the pool is up: every worker sweeps, one at a time.
    from worker.recovery import RecoveryTimer

    timer = RecoveryTimer(app, settings)
    timer.start()
    _recovery.append(timer)


@worker_shutdown.connect
def _stop_recovery(**_: Any) -> None:
    for timer in _recovery:
        timer.stop()
