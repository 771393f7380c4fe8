"""Each worker process serves its own /metrics, so Prometheus scrapes every pod.

The gateway's /metrics adds up the processes that share its
PROMETHEUS_MULTIPROC_DIR (shared/metrics.py): one host, or one volume. On
Kubernetes a worker's pod shares no disk with a gateway, so each worker
process serves its own counts on WORKER_METRICS_PORT and Prometheus adds the
pods up (`sum by (...)`); the metric names are the same.

A worker is one process (Celery's threads pool, shared/queue.py), so one
port per process is one port per pod. Should a pod run several processes
sharing a PROMETHEUS_MULTIPROC_DIR of its own (say, a prefork pool), the
server adds up that directory, which then must hold that pod's processes
alone.
"""

from __future__ import annotations

import os
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from shared.metrics import MULTIPROC_DIR_ENV, process_id


class PortTaken(Exception):
    """WORKER_METRICS_PORT could not be bound."""


def serve(port: int) -> WSGIServer:
    """Serves this process's metrics (or its pod's directory's) on every
    interface at `port`, from a daemon thread."""
    registry = REGISTRY
    path = os.environ.get(MULTIPROC_DIR_ENV)
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    try:
        server, _ = start_http_server(port, registry=registry)
    except OSError as exc:
        raise PortTaken(f"WORKER_METRICS_PORT: cannot serve metrics on port {port} "
                        f"({exc.strerror or exc})") from exc
    return server


def stop(server: WSGIServer) -> None:
    server.shutdown()
    server.server_close()


def process_ended() -> None:
    """In a shared directory, this process's gauges stop counting (a process
    killed outright leaves them until the directory is emptied)."""
    path = os.environ.get(MULTIPROC_DIR_ENV)
    if path:
        mark_process_dead(process_id(), path)  # type: ignore[no-untyped-call]
