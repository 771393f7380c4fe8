"""The checkpoint saver as the gateway and the workers open it, from settings."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from shared.checkpoint import AsyncS3Saver, decode_key
from shared.settings import Settings

# The graph's message channel, whose every message the saver keeps in a
# transcript that history pages read (the state itself keeps a window).
MESSAGES_CHANNEL = "messages"


def open_saver(settings: Settings) -> AbstractAsyncContextManager[AsyncS3Saver]:
    """The S3 saver for the life of a context; both sides must read what the other wrote."""
    key = settings.CHECKPOINT_ENCRYPTION_KEY
    return AsyncS3Saver.from_conn_string(
        settings.s3_url,
        endpoint_url=settings.S3_ENDPOINT_URL,
        region_name=settings.AWS_REGION,
        encryption_key=decode_key(key.get_secret_value()) if key else None,
        keep_last=settings.CHECKPOINT_KEEP_LAST or None,
        transcript=MESSAGES_CHANNEL,
    )
