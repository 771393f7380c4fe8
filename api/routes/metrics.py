"""GET /metrics: the counts of the gateway and every worker, in Prometheus' text format."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, check_metrics_token
from api.openapi_responses import errors
from shared.metrics import MULTIPROC_DIR_ENV
from shared.queue import queue_depths

router = APIRouter(tags=["operations"])


class QueueDepth(Collector):
    """Messages waiting in the Celery queues, as the broker counts them for this scrape."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("chat_queue_depth", "Tasks waiting in the Celery queue.",
                                   labels=["queue"])
        for queue, depth in self.depths.items():
            family.add_metric([queue], depth)
        return [family]


def render(depths: dict[str, int]) -> bytes:
    """Every process's counts (or this process's alone, without a shared
    directory), then the queues' depths."""
    path = os.environ.get(MULTIPROC_DIR_ENV)
    counts = REGISTRY
    if path:
        counts = CollectorRegistry()
        MultiProcessCollector(counts, path)  # type: ignore[no-untyped-call]
    levels = CollectorRegistry()
    levels.register(QueueDepth(depths))
    return generate_latest(counts) + generate_latest(levels)


@router.get("/metrics", response_class=Response, dependencies=[Depends(check_metrics_token)],
            responses={
    **errors(), 200: {"description": "Prometheus text format.",
                      "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
async def get_metrics(services: ServicesDep) -> Response:
    """Metrics of the gateway and all workers: with METRICS_TOKEN set, it is
    the bearer token needed (an API key is refused); else a key when auth is on."""
    body = await run_in_threadpool(lambda: render(queue_depths(services.celery)))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
