"""The few S3 calls the saver makes, and the one place botocore errors become ours."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .errors import CheckpointConflict, S3SaverError, S3Unavailable

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_BUSY = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
     "ServiceUnavailable", "InternalError", "TooManyRequestsException"}
)
_DELETE_BATCH = 1000  # DeleteObjects' limit


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: Exception, *, conditional: bool) -> S3SaverError:
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
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


@contextmanager
def _s3_call(*, conditional: bool = False, missing_ok: bool = False) -> Iterator[_Outcome]:
    """Run S3 calls, turning every botocore/aiobotocore failure into an ``S3SaverError``.

    With ``missing_ok``, a 404 is swallowed and reported as ``outcome.missing``.
    """
    outcome = _Outcome()
    try:
        yield outcome
    except (BotoCoreError, ClientError, OSError) as exc:
        if missing_ok and isinstance(exc, ClientError) and _code(exc) in _MISSING:
            outcome.missing = True
            return
        raise _translate(exc, conditional=conditional) from exc


class ObjectStore:
    """Bucket-scoped wrapper of an aiobotocore S3 client.

    Args:
        client: An open aiobotocore S3 client.
        bucket: The bucket every key lives in.
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """Return ``(body, etag)`` of ``key``, or ``None`` if it does not exist."""
        with _s3_call(missing_ok=True) as call:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as stream:
                body: bytes = await stream.read()
        if call.missing:
            return None
        return body, str(response["ETag"])

    async def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        """Store ``body`` at ``key``, optionally only if its ETag matches / it is absent.

        Returns:
            The new ETag.

        Raises:
            CheckpointConflict: If the condition did not hold.
        """
        condition: dict[str, str] = {}
        if if_match is not None:
            condition["IfMatch"] = if_match
        elif if_none_match:
            condition["IfNoneMatch"] = "*"
        with _s3_call(conditional=bool(condition)):
            response = await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, **condition
            )
        return str(response["ETag"])

    async def list_keys(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, in S3's (lexicographic) order."""
        keys: list[str] = []
        with _s3_call():
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(str(item["Key"]) for item in page.get("Contents", ()))
        return keys

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing ones are fine), in batches of 1000."""
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            with _s3_call():
                response = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if errors := response.get("Errors"):
                raise S3SaverError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")

    async def head_bucket(self) -> None:
        """Check that the bucket exists and answers."""
        with _s3_call():
            await self.client.head_bucket(Bucket=self.bucket)
