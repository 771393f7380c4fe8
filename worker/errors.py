"""Why a turn did not finish, as the task needs to know it.

    TurnError
     ├── TransientError   try again later (LLM 429/5xx/timeout, S3 or Redis down,
     │    │               a concurrent writer)
     │    └── RateLimited our own global limit: wait for a free slot
     └── RejectedError    the LLM refused the request: fail now, retrying won't help

Third-party exceptions become these in one place: `classify()`.
"""

from __future__ import annotations

import groq
import openai
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.checkpoint import CheckpointConflict, S3Unavailable


class TurnError(Exception):
    """Base of the errors a turn ends with."""


class TransientError(TurnError):
    """Worth retrying; `retry_after` is the wait the other side asked for, if any.

    `counts` says whether the failure uses up one of the job's retries: LLM
    failures do; storage being down or a concurrent writer do not (the job
    waits them out, up to a time limit).
    """

    def __init__(self, detail: str, retry_after: float | None = None, *,
                 timed_out: bool = False, rate_limited: bool = False,
                 counts: bool = True) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.rate_limited = rate_limited
        self.counts = counts


class RateLimited(TransientError):
    """The global LLM rate limit (or a provider's pause) says: not before `retry_after`."""

    def __init__(self, wait: float) -> None:
        super().__init__("global LLM rate limit", wait, counts=False)


class RejectedError(TurnError):
    """The LLM rejected the request (4xx other than 429)."""


_API_STATUS = (groq.APIStatusError, openai.APIStatusError)
_API_TIMEOUT = (groq.APITimeoutError, openai.APITimeoutError)
_API_CONNECTION = (groq.APIConnectionError, openai.APIConnectionError)
_STORAGE_DOWN = (S3Unavailable, RedisConnectionError, RedisTimeoutError)


def _retry_after(exc: groq.APIStatusError | openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def classify(exc: BaseException) -> TurnError | None:
    """The TurnError for a third-party exception, or None if it is a bug."""
    if isinstance(exc, TurnError):
        return exc
    if isinstance(exc, _API_STATUS):
        code = exc.status_code
        if code == 429:
            return TransientError("LLM rate limit (429)", _retry_after(exc), rate_limited=True)
        if code >= 500:
            return TransientError(f"LLM server error ({code})", _retry_after(exc))
        return RejectedError(f"LLM rejected the request ({code}): {exc.message}")
    if isinstance(exc, (*_API_TIMEOUT, TimeoutError)):
        return TransientError("LLM call timed out", timed_out=True)
    if isinstance(exc, _API_CONNECTION):
        return TransientError("LLM unreachable")
    if isinstance(exc, CheckpointConflict):
        return TransientError("the thread changed under this turn", 0.0, counts=False)
    if isinstance(exc, _STORAGE_DOWN):
        return TransientError(f"storage unavailable ({type(exc).__name__})", counts=False)
    return None
