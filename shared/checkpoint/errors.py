"""Errors raised by the S3 checkpoint saver.

Callers only ever see these; botocore and aiobotocore exceptions are translated
in one place (``_s3.py``) and chained as ``__cause__``::

    S3SaverError                 the saver could not do what was asked
     ├── S3Unavailable           connection error, timeout, 5xx, SlowDown:
     │                           storage is down, retry later
     └── CheckpointConflict      a conditional write lost (412 / 409): another
                                 writer moved the thread since this saver read
                                 it; reload the latest checkpoint and redo the turn

Bad arguments (an unsafe thread id, a malformed connection string) raise
``ValueError`` instead: retrying them can never help.
"""

from __future__ import annotations

__all__ = ["CheckpointConflict", "S3SaverError", "S3Unavailable"]


class S3SaverError(Exception):
    """Base class: the S3 saver failed (missing bucket, access denied, bad data...)."""


class S3Unavailable(S3SaverError):
    """S3 did not answer usefully (network, timeout, 5xx, throttling); retry later."""


class CheckpointConflict(S3SaverError):
    """A concurrent writer changed the thread after this saver last read it."""
