"""A job's events, for the streams of both APIs (sse-starlette does the protocol).

Events are read from the job's Redis stream, so a client that reconnects
with `Last-Event-ID` (the stream entry id) gets exactly what it missed. The
stream ends after the terminal event; if the job's stream has expired, the
terminal event is rebuilt from the job's record, so no reader hangs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from api.errors import ApiError
from api.events import EventHub
from shared.job_events import Event
from shared.redis_client import MAX_BLOCK_MS
from shared.store.job import Job, JobStatus, done_body
from shared.store.jobs import JobStore

KEEPALIVE_SECONDS = 15
# Both parts of a Redis stream id are unsigned 64-bit integers: Redis refuses a
# larger one, and by then the stream's 200 has been sent.
MAX_ID_PART = 2**64 - 1


def _at_most(limit: int) -> str:
    """A regex of the decimal numbers 0..`limit`, as a schema pattern can say it.

    Shorter numbers all fit; one of the same length fits if, at the first digit
    where it differs from `limit`, its digit is the smaller.
    """
    top = str(limit)
    options = [f"[0-9]{{1,{len(top) - 1}}}", top]
    for index, digit in enumerate(top):
        if digit != "0":
            rest = len(top) - index - 1
            options.append(top[:index] + f"[0-{int(digit) - 1}]"
                           + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(options) + ")"


_PART = _at_most(MAX_ID_PART)
_EVENT_ID = re.compile(f"{_PART}-{_PART}")
# For the schema: checked by `parse_last_event_id`, so a bad one is a 400.
LAST_EVENT_ID_SCHEMA: dict[str, Any] = {
    "pattern": f"^({_EVENT_ID.pattern})?$", "maxLength": 41,
    "description": "The id of the last event received; the stream resumes just after it. "
                   "Two decimal numbers joined by '-', each at most 2^64-1.",
}


class BadEventId(ApiError):
    status_code = 400


def parse_last_event_id(raw: str | None) -> str:
    """The stream position to resume after; "0-0" for the start."""
    if raw is None or raw == "":
        return "0-0"
    if _EVENT_ID.fullmatch(raw) is None:
        raise BadEventId("Last-Event-ID must be an event id of this stream, like "
                         "1700000000000-0 (each number at most 2^64-1)")
    return raw


# The id of an outcome rebuilt from the job's record, which has no stream position.
REBUILT = "0-0"


def _terminal_from_record(job: Job) -> Event:
    if job.status == JobStatus.SUCCEEDED:
        return Event.of(REBUILT, "done", done_body(job, job.response or "", job.interrupted))
    if job.status == JobStatus.CANCELLED:
        return Event.of(REBUILT, "cancelled", {"job_id": job.job_id})
    return Event.of(REBUILT, "error", {"detail": job.error or "failed", "job_id": job.job_id})


async def job_event_log(hub: EventHub, jobs: JobStore, job: Job,
                        after: str) -> AsyncIterator[Event | None]:
    """The job's events after `after`, up to and including its terminal one;
    None after each idle wait, so a caller can keep its connection alive."""
    async with hub.subscribe(job.job_id, job.client, after) as sub:
        while True:
            event = await sub.next(MAX_BLOCK_MS / 1000)
            if event is None:
                try:
                    latest = await jobs.get(job.job_id)
                except RedisError:
                    yield None  # Redis is down: the caller waits on
                    continue
                if latest is None or latest.finished:
                    # Nothing more will come: the stream has expired, or the
                    # client asked to resume after its end. Close with the outcome.
                    yield _terminal_from_record(latest or job)
                    return
                yield None
                continue
            yield event
            if event.terminal:
                return
