"""The S3 calls the saver makes (sync and async), retries, and the one place
botocore errors become ours."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ._requests import NOT_MODIFIED, Delete, Found, Get, HeadBucket, ListKeys, Put, Request
from .errors import CheckpointConflict, S3SaverError, S3Unavailable

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_BUSY = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
     "ServiceUnavailable", "InternalError", "TooManyRequestsException"}
)
_DELETE_BATCH = 1000  # DeleteObjects' limit

# Our own retries (RetryPolicy) replace botocore's: one policy for both
# clients, and a retried conditional PUT is checked by the plan, not guessed.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=3,
    read_timeout=15,
    max_pool_connections=64,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry S3 when it is busy or unreachable.

    Retries cover ``S3Unavailable`` only: throttling (503 SlowDown, 429),
    other 5xx, timeouts and connection errors. Waits grow exponentially, with
    jitter so that throttled workers do not come back in step.

    Attributes:
        attempts: Tries per request, the first included.
        base_delay: Seconds of the first wait (before jitter).
        max_delay: Cap of one wait, in seconds.
    """

    attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries (>= 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (failures - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _translate(exc: Exception, *, conditional: bool) -> S3SaverError:
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        # A conditional PUT on a key that vanished answers 404: the head moved too.
        if conditional and (status in (409, 412) or code in _CONFLICT | _MISSING):
            return CheckpointConflict(str(exc))
        if status >= 500 or status == 429 or code in _BUSY:
            return S3Unavailable(str(exc))
        return S3SaverError(str(exc))
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
        return S3Unavailable(str(exc))
    return S3SaverError(str(exc))


@dataclass
class _Outcome:
    missing: bool = False
    not_modified: bool = False


@contextmanager
def _s3_call(*, conditional: bool = False, reading: bool = False) -> Iterator[_Outcome]:
    """Run S3 calls, turning every botocore failure into an ``S3SaverError``.

    With ``reading``, a 404 and a 304 are answers, reported on the outcome.
    """
    outcome = _Outcome()
    try:
        yield outcome
    except (BotoCoreError, ClientError, OSError) as exc:
        if reading and isinstance(exc, ClientError):
            if _code(exc) in _MISSING:
                outcome.missing = True
                return
            if _status(exc) == 304:
                outcome.not_modified = True
                return
        raise _translate(exc, conditional=conditional) from exc


def _get_args(bucket: str, request: Get) -> dict[str, str]:
    args = {"Bucket": bucket, "Key": request.key}
    if request.if_match is not None:
        args["IfMatch"] = request.if_match
    if request.if_none_match is not None:
        args["IfNoneMatch"] = request.if_none_match
    return args


def _put_args(bucket: str, request: Put) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": request.key, "Body": request.body}
    if request.if_match is not None:
        args["IfMatch"] = request.if_match
    elif request.create:
        args["IfNoneMatch"] = "*"
    return args


def _delete_batches(bucket: str, keys: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(keys), _DELETE_BATCH):
        objects = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
        yield {"Bucket": bucket, "Delete": {"Objects": objects, "Quiet": True}}


def _check_deleted(response: dict[str, Any]) -> None:
    if errors := response.get("Errors"):
        raise S3SaverError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")


def _found(call: _Outcome, body: bytes, response: dict[str, Any]) -> Found | object | None:
    if call.missing:
        return None
    if call.not_modified:
        return NOT_MODIFIED
    return Found(body, str(response["ETag"]))


class SyncStore:
    """Performs requests with a boto3 S3 client, retrying per the policy.

    Args:
        client: An open boto3 S3 client; the caller closes it.
        bucket: The bucket every key lives in.
        retry: When to retry.
    """

    def __init__(self, client: Any, bucket: str, retry: RetryPolicy) -> None:
        self.client = client
        self.bucket = bucket
        self.retry = retry

    def execute(self, request: Request) -> Any:
        """Perform one request (see ``_requests`` for each result)."""
        failures = 0
        while True:
            try:
                return self._once(request)
            except S3Unavailable:
                failures += 1
                if failures >= self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(failures))

    def _once(self, request: Request) -> Any:
        bucket, client = self.bucket, self.client
        if isinstance(request, Get):
            body, response = b"", {}
            with _s3_call(reading=True, conditional=request.if_match is not None) as call:
                response = client.get_object(**_get_args(bucket, request))
                body = response["Body"].read()
            return _found(call, body, response)
        if isinstance(request, Put):
            conditional = request.if_match is not None or request.create
            with _s3_call(conditional=conditional):
                return str(client.put_object(**_put_args(bucket, request))["ETag"])
        if isinstance(request, ListKeys):
            keys: list[str] = []
            with _s3_call():
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=request.prefix
                ):
                    keys.extend(str(item["Key"]) for item in page.get("Contents", ()))
            return keys
        if isinstance(request, Delete):
            for args in _delete_batches(bucket, request.keys):
                with _s3_call():
                    response = client.delete_objects(**args)
                _check_deleted(response)
            return None
        with _s3_call():
            client.head_bucket(Bucket=bucket)
        return None


class AsyncStore:
    """Performs requests with an aiobotocore S3 client, retrying per the policy.

    Args:
        client: An open aiobotocore S3 client; the caller closes it.
        bucket: The bucket every key lives in.
        retry: When to retry.
    """

    def __init__(self, client: Any, bucket: str, retry: RetryPolicy) -> None:
        self.client = client
        self.bucket = bucket
        self.retry = retry

    async def execute(self, request: Request) -> Any:
        """Perform one request (see ``_requests`` for each result)."""
        failures = 0
        while True:
            try:
                return await self._once(request)
            except S3Unavailable:
                failures += 1
                if failures >= self.retry.attempts:
                    raise
                await asyncio.sleep(self.retry.delay(failures))

    async def _once(self, request: Request) -> Any:
        bucket, client = self.bucket, self.client
        if isinstance(request, Get):
            body, response = b"", {}
            with _s3_call(reading=True, conditional=request.if_match is not None) as call:
                response = await client.get_object(**_get_args(bucket, request))
                async with response["Body"] as stream:
                    body = await stream.read()
            return _found(call, body, response)
        if isinstance(request, Put):
            conditional = request.if_match is not None or request.create
            with _s3_call(conditional=conditional):
                return str((await client.put_object(**_put_args(bucket, request)))["ETag"])
        if isinstance(request, ListKeys):
            keys: list[str] = []
            with _s3_call():
                async for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=request.prefix
                ):
                    keys.extend(str(item["Key"]) for item in page.get("Contents", ()))
            return keys
        if isinstance(request, Delete):
            for args in _delete_batches(bucket, request.keys):
                with _s3_call():
                    response = await client.delete_objects(**args)
                _check_deleted(response)
            return None
        assert isinstance(request, HeadBucket)
        with _s3_call():
            await client.head_bucket(Bucket=bucket)
        return None
