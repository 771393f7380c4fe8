"""The checkpoint saver as the gateway and the workers open it, from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from shared import metrics
from shared.checkpoint import AsyncS3Saver, decode_key
from shared.settings import Settings

# The graph's message channel, whose every message the saver keeps in a
# transcript that history pages read (the state itself keeps a window).
MESSAGES_CHANNEL = "messages"


@asynccontextmanager
async def open_saver(settings: Settings) -> AsyncIterator[AsyncS3Saver]:
    """The S3 saver for the life of a context; both sides must read what the other wrote."""
    key = settings.CHECKPOINT_ENCRYPTION_KEY
    async with AsyncS3Saver.from_conn_string(
        settings.s3_url,
        endpoint_url=settings.S3_ENDPOINT_URL,
        region_name=settings.AWS_REGION,
        encryption_key=decode_key(key.get_secret_value()) if key else None,
        keep_last=settings.CHECKPOINT_KEEP_LAST or None,
        transcript=MESSAGES_CHANNEL,
        max_connections=settings.S3_MAX_CONNECTIONS,
    ) as saver:
        count_requests(saver.client)
        yield saver


def count_requests(client: Any) -> None:
    """Counts the client's S3 requests and failures through botocore's events,
    so the saver package itself knows nothing of metrics."""
    events = client.meta.events
    events.register("after-call.s3", _answered)
    events.register("after-call-error.s3", _unanswered)


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]  # "after-call.s3.GetObject"


def _answered(event_name: str, http_response: Any, **_: Any) -> None:
    operation = _operation(event_name)
    metrics.S3_REQUESTS.labels(operation).inc()
    if http_response.status_code >= 400:
        metrics.S3_ERRORS.labels(operation).inc()


def _unanswered(event_name: str, **_: Any) -> None:
    operation = _operation(event_name)
    metrics.S3_REQUESTS.labels(operation).inc()
    metrics.S3_ERRORS.labels(operation).inc()
