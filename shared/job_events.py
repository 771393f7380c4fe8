"""A job's event stream as readers get it: its entries, parsed from an XREAD reply.

The worker appends the events (shared.store.jobs.JobStore); gateways read them
(api.events) and show them in both APIs' streams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

TERMINAL_EVENTS = frozenset({"done", "error", "cancelled"})


@dataclass(frozen=True)
class Event:
    """One event of a job's stream; its data is read from the JSON text only
    when asked for (most pass through a stream as they are)."""

    id: str
    type: str
    raw: str  # the data, as JSON text

    @classmethod
    def of(cls, id: str, type: str, data: Any) -> Event:
        return cls(id, type, json.dumps(data))

    @cached_property
    def data(self) -> Any:
        return json.loads(self.raw)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]


def parse_events(reply: StreamReply | None) -> dict[str, list[Event]]:
    """An XREAD reply as events by stream key."""
    return {key: [Event(entry_id, fields["type"], fields["data"])
                  for entry_id, fields in entries]
            for key, entries in reply or []}
