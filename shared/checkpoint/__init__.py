"""LangGraph checkpoint savers on S3 (sync boto3, async aioboto3), usable on their own.

Example::

    async with AsyncS3Saver.from_conn_string(
        "s3://bucket/chat_histories/", keep_last=20, serde=make_serde(key)
    ) as saver:
        await saver.setup()
        graph = builder.compile(checkpointer=saver)

A chat turn (read the latest checkpoint, write one) costs at most 3 S3
requests and uploads what the turn added, not the conversation; see
``_plans`` for how, and ``bench/SAVER.md`` for measurements.
"""

from ._s3 import RetryPolicy
from .aio import AsyncS3Saver
from .errors import CheckpointConflict, S3SaverError, S3Unavailable
from .serde import make_serde
from .sync import S3Saver

__all__ = [
    "AsyncS3Saver",
    "CheckpointConflict",
    "RetryPolicy",
    "S3Saver",
    "S3SaverError",
    "S3Unavailable",
    "make_serde",
]
