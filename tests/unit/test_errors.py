from __future__ import annotations

import groq
import httpx
import pytest
import redis.exceptions

from worker import errors
from worker.errors import RejectedError, TransientError, classify

# What a provider might say: fine for the log, not for the client.
PROVIDER_WORDS = "Organization org_123 has exceeded its quota; model llama-x"


def status_error(code: int, headers: dict[str, str] | None = None) -> groq.APIStatusError:
    request = httpx.Request("POST", "http://llm/openai/v1/chat/completions")
    response = httpx.Response(code, headers=headers or {}, request=request)
    cls = {400: groq.BadRequestError, 401: groq.AuthenticationError,
           429: groq.RateLimitError, 500: groq.InternalServerError}.get(code, groq.APIStatusError)
    return cls(f"{PROVIDER_WORDS} {code}", response=response, body=None)


def test_429_is_transient_and_keeps_retry_after() -> None:
    error = classify(status_error(429, {"retry-after": "7"}))
    assert isinstance(error, TransientError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors_are_transient(code: int) -> None:
    assert isinstance(classify(status_error(code)), TransientError)


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_client_errors_are_rejections(code: int) -> None:
    error = classify(status_error(code))
    assert isinstance(error, RejectedError)
    assert str(code) in str(error)
    assert PROVIDER_WORDS in str(error)  # for the log
    assert error.public == "the LLM provider refused the request"


@pytest.mark.parametrize(("code", "public"), [
    (400, errors.REFUSED), (401, errors.REFUSED), (429, errors.RATE_LIMITED),
    (500, errors.UNAVAILABLE), (503, errors.UNAVAILABLE),
])
def test_clients_get_a_fixed_text_never_the_providers(code: int, public: str) -> None:
    error = classify(status_error(code))
    assert error is not None
    assert error.public == public
    assert PROVIDER_WORDS not in error.public


def test_timeouts_are_transient_and_marked() -> None:
    request = httpx.Request("POST", "http://llm")
    error = classify(groq.APITimeoutError(request=request))
    assert isinstance(error, TransientError)
    assert error.timed_out
    assert error.public == "the LLM call timed out"


def test_an_unreachable_provider_is_unavailable() -> None:
    error = classify(groq.APIConnectionError(request=httpx.Request("POST", "http://llm")))
    assert isinstance(error, TransientError)
    assert error.public == "the LLM provider is unavailable"


def test_bugs_are_not_classified() -> None:
    assert classify(KeyError("x")) is None


@pytest.mark.parametrize("exc", [redis.exceptions.ClusterDownError("CLUSTERDOWN"),
                                 redis.exceptions.TryAgainError("TRYAGAIN"),
                                 redis.exceptions.SlotNotCoveredError("slot 7 not covered")])
def test_a_redis_cluster_that_is_failing_over_is_storage_down(exc: Exception) -> None:
    error = classify(exc)
    assert isinstance(error, TransientError)
    assert error.public == errors.STORAGE_DOWN
    assert not error.counts
