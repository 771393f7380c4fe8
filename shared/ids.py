"""The one rule for identifiers that reach an S3 key, a Redis key or a log line."""

from __future__ import annotations

import re
import uuid

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_id(value: object) -> bool:
    # fullmatch, not `$`: Python's `$` also accepts a trailing newline.
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def new_id() -> str:
    return uuid.uuid4().hex
