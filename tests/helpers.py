"""Helpers shared by several test modules."""

from __future__ import annotations

from shared.ids import new_id
from shared.jobs import Job, JobStore

# Limits high enough that only the tests about them meet them.
ROOMY = 10_000


def a_job(thread_id: str | None = None, message: str = "hi", client: str = "") -> Job:
    return Job(job_id=new_id(), thread_id=thread_id or new_id(), message=message,
               language="English", client=client)


async def accept(jobs: JobStore, job: Job) -> Job:
    """Records the job as the gateway does, with limits the test does not meet."""
    return await jobs.create(job, ROOMY, ROOMY)
