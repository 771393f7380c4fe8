"""The HTTP models: what clients send and get back (they make the OpenAPI schema)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.ids import ID_PATTERN, MAX_ID_LENGTH
from shared.store.conversations import CURSOR_PATTERN

MAX_MESSAGE_CHARS = 32_000
# The schema's patterns say exactly what the validators below check (which
# give the friendlier messages). Whitespace is what str.strip() removes.
NOT_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _letters_and_marks() -> tuple[str, str]:
    """Unicode's letters, and its letters and combining marks, as regex class
    ranges from this Python's own Unicode database: so the schema's pattern
    and the check agree in any engine, whatever Unicode version it knows
    (`\\p{L}` does not). Planes 4 to 13 hold no character, 15 and 16 private
    ones only: they are not read."""
    found: dict[str, list[tuple[int, int]]] = {"L": [], "M": []}
    for code in (*range(0x40000), *range(0xE0000, 0xF0000)):
        ranges = found.get(unicodedata.category(chr(code))[0])
        if ranges is None:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def text(ranges: list[tuple[int, int]]) -> str:
        return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)

    return text(found["L"]), text(found["L"]) + text(found["M"])


# A letter, then letters (with their combining marks, as in "हिन्दी"), spaces or hyphens.
_LETTER, _LETTER_OR_MARK = _letters_and_marks()
LANGUAGE = f"^[{_LETTER}][{_LETTER_OR_MARK} -]{{0,63}}$"
_LANGUAGE = re.compile(LANGUAGE)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be only whitespace")
    return value


def _letters(value: str) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise ValueError("must be 1-64 letters, spaces or hyphens, starting with a letter")
    return value


# A user's message: 1..32,000 characters, not only whitespace.
MessageText = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS,
                                   json_schema_extra={"pattern": NOT_BLANK}),
                        AfterValidator(_not_blank)]
# A reply language, like "English" or "Brazilian Portuguese".
LanguageName = Annotated[str, Field(min_length=1, max_length=64,
                                    json_schema_extra={"pattern": LANGUAGE}),
                         AfterValidator(_letters)]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: MessageText = Field(description="The user's message; not only whitespace.")
    thread_id: str | None = Field(
        None, pattern=ID_PATTERN, max_length=MAX_ID_LENGTH,
        description="The conversation; omitted or null starts a new one.")
    language: LanguageName = Field(
        "English", description="The reply language: 1-64 letters, spaces or hyphens.")


class ChatQuery(BaseModel):
    # Unknown parameters are refused: a misspelt `wait=false` must not wait.
    model_config = ConfigDict(extra="forbid")

    wait: bool = Field(True, description="Wait for the reply (200), or answer 202 at once.")
    stream: bool = Field(False, description="Answer at once with the job's events "
                                            "(Server-Sent Events).")
    # SkipJsonSchema: a query parameter is absent or a number, never null.
    timeout: Annotated[float, Field(ge=0, le=300)] | SkipJsonSchema[None] = Field(
        None, description="Seconds to wait for the reply; default CHAT_WAIT_TIMEOUT.")


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


# A history cursor: a position in the thread's transcript; clients treat it as opaque.
HISTORY_CURSOR = r"^[0-9]{1,12}$"


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000, description="At most this many messages.")
    # SkipJsonSchema: a query parameter is absent or a string, never null. The
    # pattern is documented, not enforced here: a malformed cursor is 400, not 422.
    before: str | SkipJsonSchema[None] = Field(
        None, json_schema_extra={"pattern": HISTORY_CURSOR, "maxLength": 12},
        description="The `next_before` of a page: this page holds the messages before it. "
                    "Omitted: the newest messages.")


class History(BaseModel):
    thread_id: str
    messages: list[HistoryMessage] = Field(
        description="Oldest first. A page may hold fewer than `limit` messages (it never reads "
                    "more than one stored segment); follow `next_before` for the rest.")
    next_before: str | None = Field(
        description="Cursor of the page of older messages; null when this page starts at "
                    "the conversation's first message.")


class ErrorBody(BaseModel):
    detail: str
    job_id: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class ThreadsQuery(BaseModel):
    # Unknown parameters are refused: a misspelt `before` must not restart the list.
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100, description="Threads per page.")
    # The pattern is for the schema; shared.store.conversations.parse_cursor checks it, so
    # a bad cursor is a 400.
    before: str | SkipJsonSchema[None] = Field(
        None, description="The `next_before` of the previous page; omitted = the newest.",
        json_schema_extra={"pattern": CURSOR_PATTERN})


class ThreadItem(BaseModel):
    thread_id: str
    title: str = Field(description="The conversation's first message, cut short.")
    updated_at: datetime = Field(description="Its last accepted or stored turn.")
    messages: int = Field(description="How many messages it holds.")


class ThreadList(BaseModel):
    threads: list[ThreadItem]
    next_before: str | None = Field(description="The cursor of the next (older) page; "
                                                "null on the last one.")
