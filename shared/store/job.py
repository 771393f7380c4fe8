"""A job's record: what the gateway accepted, and what became of it.

The record is one Redis hash (shared/store/jobs.py keeps it): its fields
are Job's attributes, and the scripts there read and write the ones named
below by these names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.ids import shown_thread_id
from shared.runs import run_of_record


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# The record's fields the scripts name (Job's attributes of the same names).
STATUS, CREATED_AT, STARTED_AT, FINISHED_AT = "status", "created_at", "started_at", "finished_at"
TASK_ID, ATTEMPT, CANCEL_REQUESTED = "task_id", "attempt", "cancel_requested"
TITLE, RESPONSE = "title", "response"
# Fields of the record only: set once the worker is storing the turn, so a
# cancel comes too late; and the transient failures' count and first time.
COMMITTING, FAILURES, FIRST_FAILURE_AT = "committing", "failures", "first_failure_at"


@dataclass(frozen=True)
class Job:
    """What the gateway accepted, and what became of it."""

    job_id: str
    thread_id: str
    # The run's first human message: what names a new thread in its owner's list.
    title: str = ""
    status: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    owner: str = ""
    # Who is charged for it in the per-client limit: the owner, or a digest
    # of the address when auth is off.
    client: str = ""
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    response: str | None = None
    error: str | None = None
    http_status: int | None = None
    task_id: str = ""
    cancel_requested: float | None = None
    # The run (shared.runs.RunSpec as JSON), kept in the job's record so it
    # lives and expires with it.
    run: str = ""
    # The run ended at an interrupt(): the thread waits for a resume.
    interrupted: bool = False
    # The trace context of the request that queued it (shared.tracing), which
    # the worker's spans of the run join; None (not stored) with tracing off.
    trace: str | None = None

    def to_redis(self) -> dict[str, str]:
        return {k: str(int(v)) if isinstance(v, bool) else str(v)
                for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> Job:
        def number(name: str) -> float | None:
            return float(raw[name]) if name in raw else None

        http_status = raw.get("http_status")
        return cls(
            job_id=raw["job_id"],
            thread_id=raw["thread_id"],
            title=raw.get("title", raw.get("message", "")),
            status=JobStatus(raw["status"]),
            created_at=float(raw["created_at"]),
            owner=raw.get("owner", ""),
            client=raw.get("client", ""),
            attempt=int(raw.get("attempt", "0")),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            response=raw.get("response"),
            error=raw.get("error"),
            http_status=int(http_status) if http_status else None,
            task_id=raw.get("task_id", ""),
            cancel_requested=number("cancel_requested"),
            run=run_of_record(raw),
            interrupted=raw.get("interrupted") == "1",
            trace=raw.get("trace"),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def done_body(job: Job, response: str, interrupted: bool) -> dict[str, Any]:
    """The data of a job's `done` event (also rebuilt from its record)."""
    return {"response": response, "thread_id": shown_thread_id(job.thread_id),
            "job_id": job.job_id,
            "interrupted": interrupted}
