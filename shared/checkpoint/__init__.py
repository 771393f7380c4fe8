"""LangGraph checkpoint savers on S3 (sync boto3, async aioboto3), usable on their own.

Example::

    async with AsyncS3Saver.from_conn_string(
        "s3://bucket/chat_histories/", keep_last=20, encryption_key=key,
        transcript="messages",
    ) as saver:
        await saver.setup()
        graph = builder.compile(checkpointer=saver)

A chat turn (read the latest checkpoint, write one) costs 2 S3 requests,
3 when it seals a transcript segment. With a graph that keeps a bounded
window of messages, what a turn reads and writes does not grow with the
conversation, and the transcript keeps every message for paged reads
(``aget_transcript``); see ``_plans`` for how.
"""

from ._puts import PutItem, WritesItem
from ._s3 import RetryPolicy
from .aio import AsyncS3Saver
from .base import TranscriptEntry, TranscriptPage
from .errors import CheckpointConflict, S3SaverError, S3Unavailable
from .serde import decode_key
from .sync import S3Saver

__all__ = [
    "AsyncS3Saver",
    "CheckpointConflict",
    "PutItem",
    "RetryPolicy",
    "S3Saver",
    "S3SaverError",
    "S3Unavailable",
    "TranscriptEntry",
    "TranscriptPage",
    "WritesItem",
    "decode_key",
]
