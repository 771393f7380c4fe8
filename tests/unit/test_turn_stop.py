"""Stopping a turn's run: a cancel a library swallows is sent again."""

from __future__ import annotations

import asyncio
import contextlib
import time

from worker.turn import CANCEL_AGAIN_SECONDS, stop


async def loses_one_cancel() -> None:
    """Like a library that catches CancelledError and goes on streaming."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    await asyncio.sleep(30)


async def test_a_run_that_swallows_its_cancel_is_cancelled_again() -> None:
    run = asyncio.ensure_future(loses_one_cancel())
    await asyncio.sleep(0)  # it has started, and waits
    started = time.monotonic()

    await stop(run)

    assert run.cancelled()
    assert time.monotonic() - started < CANCEL_AGAIN_SECONDS + 1


async def test_ended_and_failed_tasks_are_left_as_they_ended() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    done = asyncio.ensure_future(asyncio.sleep(0, result="ok"))
    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0.01)

    await stop(done, failed)

    assert done.result() == "ok"
    assert isinstance(failed.exception(), ValueError)
