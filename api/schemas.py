"""The HTTP models: what clients send and get back (they make the OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ids import ID_PATTERN

MAX_MESSAGE_CHARS = 32_000
_LANGUAGE = re.compile(r"[^\W\d_](?:[^\W\d_]| |-){0,63}")

ThreadId = Field(pattern=ID_PATTERN, min_length=1, max_length=128,
                 examples=["3f1c2a9be7d84c0e9b2f5a6d7c8e9f01"])


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS,
                         description="The user's message; not only whitespace.")
    thread_id: str | None = Field(
        None, pattern=ID_PATTERN, max_length=128,
        description="The conversation; omitted or null starts a new one.")
    language: str = Field("English", min_length=1, max_length=64,
                          description="The reply language: 1-64 letters, spaces or hyphens.")

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be only whitespace")
        return value

    @field_validator("language")
    @classmethod
    def _letters(cls, value: str) -> str:
        if _LANGUAGE.fullmatch(value) is None:
            raise ValueError("must be 1-64 letters, spaces or hyphens, starting with a letter")
        return value


class ChatReply(BaseModel):
    response: str
    language: str
    thread_id: str
    job_id: str


class JobAccepted(BaseModel):
    job_id: str
    thread_id: str
    status: Literal["queued", "running"]


class JobView(BaseModel):
    job_id: str
    thread_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    response: str | None = None
    language: str | None = None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class CancelAccepted(BaseModel):
    job_id: str
    status: Literal["cancelling"]


class HistoryMessage(BaseModel):
    content: str
    role: Literal["human", "assistant"]
    timestamp: datetime


class History(BaseModel):
    thread_id: str
    messages: list[HistoryMessage]


class ErrorBody(BaseModel):
    detail: str
    job_id: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
