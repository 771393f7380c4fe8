"""The saver's logic as plans: generators that yield S3 requests, without doing I/O.

The sync and async savers run the same plans, each with its own client: a
plan yields a request, the runner performs it and sends back the result (or
throws the ``S3SaverError`` it raised into the plan). This keeps every
decision in one place and the two saver classes down to I/O.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Get:
    """GetObject. Result: ``Found``, ``None`` if missing, or ``NOT_MODIFIED``."""

    key: str
    if_match: str | None = None
    if_none_match: str | None = None


@dataclass(frozen=True)
class Put:
    """PutObject, optionally conditional. Result: the new ETag.

    ``if_match`` replaces only that version; ``create`` only creates. Either
    failing raises ``CheckpointConflict``.
    """

    key: str
    body: bytes
    if_match: str | None = None
    create: bool = False


@dataclass(frozen=True)
class ListKeys:
    """ListObjectsV2 over every page. Result: the keys, in S3's order."""

    prefix: str


@dataclass(frozen=True)
class Delete:
    """DeleteObjects in batches of 1000; missing keys are fine. Result: ``None``."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class HeadBucket:
    """HeadBucket. Result: ``None``."""


@dataclass(frozen=True)
class Found:
    """An object's body and ETag."""

    body: bytes
    etag: str


class _NotModified:
    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED = _NotModified()

Request = Get | Put | ListKeys | Delete | HeadBucket


@dataclass(frozen=True)
class Locked:
    """Run ``plan`` holding the runner's lock of one (thread, namespace).

    One saver serialises its calls on a namespace, so a read's reply never
    lands after, and overwrites, what its own later write learnt.
    """

    thread_id: str
    checkpoint_ns: str
    plan: Plan[Any]


@dataclass(frozen=True)
class Emit:
    """A result for the caller of a streaming plan (``list``); the runner sends back None."""

    value: Any


Step = Request | Locked | Emit
Plan = Generator[Step, Any, T]


class PlanCursor:
    """Steps through a plan for a runner, which performs each step and reports back.

    Args:
        plan: The plan; ``value`` holds what it returned once ``next`` gives ``None``.
    """

    def __init__(self, plan: Plan[Any]) -> None:
        self.plan = plan
        self.value: Any = None
        self._reply: Any = None
        self._error: BaseException | None = None

    def next(self) -> Step | None:
        """The plan's next step, or ``None`` when it is done.

        Raises:
            Exception: Whatever the plan raises (including a reported error it
                did not catch).
        """
        try:
            if self._error is not None:
                step = self.plan.throw(self._error)
            else:
                step = self.plan.send(self._reply)
        except StopIteration as stop:
            self.value = stop.value
            return None
        self._reply, self._error = None, None
        return step

    def reply(self, result: Any) -> None:
        """Report the result of the step just performed."""
        self._reply = result

    def fail(self, error: BaseException) -> None:
        """Report that the step just performed failed (thrown into the plan)."""
        self._error = error
