"""The Celery app the worker and beat processes run: `celery -A worker.celery_app worker`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import beat_init, heartbeat_sent, worker_init, worker_ready, worker_shutdown

from shared.graphs import load_registry
from shared.logging import configure_logging
from shared.queue import make_celery
from shared.settings import get_settings
from shared.tracing import setup_tracing

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from worker.heartbeat import Heartbeat
    from worker.recovery import RecoveryTimer

settings = get_settings()
configure_logging(settings)
# Every declared graph is imported now: one that cannot be stops the process.
load_registry(settings.LANGGRAPH_CONFIG, settings.CHAT_GRAPH_ID)
app = make_celery(settings, "worker")
app.conf.imports = ("worker.tasks",)


@dataclass
class _Started:
    """What this process started beside Celery, each stopped at its end."""

    heartbeat: Heartbeat | None = None
    metrics: WSGIServer | None = None
    recovery: RecoveryTimer | None = None


_started = _Started()


@worker_init.connect
def _open_runtime(**_: Any) -> None:
    # Build the loop and its clients before the pool takes tasks, not during
    # the first one. The pool is Celery's threads pool (shared/queue.py): a
    # loop thread would not survive prefork's fork.
    from shared.metric_files import fold_if_shared
    from worker.runtime import get_runtime

    fold_if_shared()  # the files of this host's workers that ended before
    # Before the runtime: its clients' first commands are traced too.
    setup_tracing("chat-worker", chat_models=True)
    runtime = get_runtime()
    if settings.WORKER_HEARTBEAT_FILE:
        from worker.heartbeat import Heartbeat

        _started.heartbeat = Heartbeat(Path(settings.WORKER_HEARTBEAT_FILE), runtime.call_soon)
    if settings.WORKER_METRICS_PORT is not None:
        from worker import metrics_server

        try:
            _started.metrics = metrics_server.serve(settings.WORKER_METRICS_PORT)
        except metrics_server.PortTaken as exc:
            # Celery logs and swallows a receiver's Exception; a worker that
            # Prometheus cannot see would be missed by the autoscaler.
            print(exc, file=sys.stderr)
            raise SystemExit(2) from None


@beat_init.connect
def _trace_beat(**_: Any) -> None:
    setup_tracing("chat-beat")
@heartbeat_sent.connect
def _beat(**_: Any) -> None:
    # Connected at import: Celery's Heart checks for receivers once, when it starts.
    if _started.heartbeat is not None:
        _started.heartbeat.beat()


@worker_shutdown.connect
def _close_runtime(**_: Any) -> None:
    from worker import metrics_server
    from worker.runtime import close_runtime

    close_runtime()
    if _started.metrics is not None:
        metrics_server.stop(_started.metrics)
    metrics_server.process_ended()


@worker_ready.connect
def _start_recovery(**_: Any) -> None:
    # In the main process, once the pool is up: every worker sweeps, one at a time.
    from worker.recovery import RecoveryTimer

    _started.recovery = RecoveryTimer(app, settings)
    _started.recovery.start()


@worker_shutdown.connect
def _stop_recovery(**_: Any) -> None:
    if _started.recovery is not None:
        _started.recovery.stop()
