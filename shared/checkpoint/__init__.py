"""LangGraph checkpoint saver on S3 (aioboto3), usable on its own.

Example::

    async with AsyncS3Saver.from_conn_string("s3://bucket/chat_histories/") as saver:
        await saver.setup()
        graph = builder.compile(checkpointer=saver)
"""

from .aio import AsyncS3Saver
from .errors import CheckpointConflict, S3SaverError, S3Unavailable

__all__ = ["AsyncS3Saver", "CheckpointConflict", "S3SaverError", "S3Unavailable"]
