"""A small Server-Sent Events reader for the tests (httpx streams the bytes)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: str | None
    type: str
    data: dict[str, Any]


def read_events(response: httpx.Response) -> Iterator[SseEvent]:
    """Parses the stream as it arrives; comment lines (keep-alives) are skipped."""
    return parse_lines(response.iter_lines())


def parse_lines(lines: Iterable[str]) -> Iterator[SseEvent]:
    """The events in a stream's lines."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield SseEvent(fields.get("id"), fields.get("event", "message"),
                               json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def reply_of(events: list[SseEvent]) -> str:
    """The reply as a client must rebuild it: the tokens after the last reset."""
    text: list[str] = []
    for event in events:
        if event.type == "reset":
            text = []
        elif event.type == "token":
            text.append(event.data["text"])
    return "".join(text)
