"""Why a turn did not finish, as the task needs to know it.

    TurnError
     ├── TransientError   try again later (LLM 429/5xx/timeout, S3 or Redis down,
     │    │               a concurrent writer)
     │    └── RateLimited our own global limit: wait for a free slot
     └── RejectedError    the LLM refused the request: fail now, retrying won't help

Third-party exceptions become these in one place: `classify()`. Each error
carries two texts: its message (`str()`), with the provider's own words, for
the log; and `public`, one of the fixed texts below, for the job's `error` and
the client. A provider's message can quote the request, our model settings or
its account state, none of which is the client's business.
"""

from __future__ import annotations

import groq
import openai
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.checkpoint import CheckpointConflict, S3Unavailable
from shared.redis_client import CLUSTER_UNAVAILABLE

REFUSED = "the LLM provider refused the request"
UNAVAILABLE = "the LLM provider is unavailable"
TIMED_OUT = "the LLM call timed out"
RATE_LIMITED = "the LLM rate limit was reached"
STORAGE_DOWN = "storage is unavailable"
CONFLICT = "the conversation changed during the turn"


class TurnError(Exception):
    """Base of the errors a turn ends with; `public` is what the client is told."""

    def __init__(self, detail: str, public: str) -> None:
        super().__init__(detail)
        self.public = public


class TransientError(TurnError):
    """Worth retrying; `retry_after` is the wait the other side asked for, if any.

    `counts` says whether the failure uses up one of the job's retries: LLM
    failures do; storage being down or a concurrent writer do not (the job
    waits them out, up to a time limit).
    """

    def __init__(self, detail: str, public: str, retry_after: float | None = None, *,
                 timed_out: bool = False, rate_limited: bool = False,
                 counts: bool = True) -> None:
        super().__init__(detail, public)
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.rate_limited = rate_limited
        self.counts = counts


class RateLimited(TransientError):
    """The global LLM rate limit (or a provider's pause) says: not before `retry_after`."""

    def __init__(self, wait: float) -> None:
        super().__init__("global LLM rate limit", RATE_LIMITED, wait, counts=False)


class RejectedError(TurnError):
    """The LLM rejected the request (4xx other than 429)."""


_API_STATUS = (groq.APIStatusError, openai.APIStatusError)
_API_TIMEOUT = (groq.APITimeoutError, openai.APITimeoutError)
_API_CONNECTION = (groq.APIConnectionError, openai.APIConnectionError)
_STORAGE_DOWN = (S3Unavailable, RedisConnectionError, RedisTimeoutError, *CLUSTER_UNAVAILABLE)


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
            return TransientError(f"LLM rate limit (429): {exc.message}", RATE_LIMITED,
                                  _retry_after(exc), rate_limited=True)
        if code >= 500:
            return TransientError(f"LLM server error ({code}): {exc.message}", UNAVAILABLE,
                                  _retry_after(exc))
        return RejectedError(f"LLM rejected the request ({code}): {exc.message}", REFUSED)
    if isinstance(exc, (*_API_TIMEOUT, TimeoutError)):
        return TransientError("LLM call timed out", TIMED_OUT, timed_out=True)
    if isinstance(exc, _API_CONNECTION):
        return TransientError(f"LLM unreachable: {exc}", UNAVAILABLE)
    if isinstance(exc, CheckpointConflict):
        return TransientError("the thread changed under this turn", CONFLICT, 0.0, counts=False)
    if isinstance(exc, _STORAGE_DOWN):
        return TransientError(f"storage unavailable ({type(exc).__name__})", STORAGE_DOWN,
                              counts=False)
    return None
