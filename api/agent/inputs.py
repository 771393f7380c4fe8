"""A run's input, checked against its graph's input schema before anything is queued.

Each key of the input must be a field of the graph's input schema (a
TypedDict, dataclass or pydantic model), and its value of the field's type
(checked with pydantic in lax mode, as LangGraph's own schemas are). Messages are taken in every
form LangChain takes them (`{"role": "user", "content": ...}`, LangChain's
message dicts, content as a string or as a list of content blocks). A graph
made per run has no channels to check before it is made: its input goes
through as it is. A graph whose module says which content blocks its model
takes (shared.graphs) gets no others.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_type_hints

from langchain_core.messages import convert_to_messages
from langgraph.channels.base import BaseChannel
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.errors import Invalid
from shared.graphs import GraphEntry


@cache
def _adapter(graph_id: str, channel: str, update_type: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(update_type)
    except Exception:  # a type pydantic cannot check: the graph will
        return None


def _is_messages(value: Any) -> bool:
    if not isinstance(value, list | dict):
        return False
    try:
        convert_to_messages(value if isinstance(value, list) else [value])
    except (ValueError, TypeError, NotImplementedError, KeyError):
        return False
    return True


def _messages_keys(value: dict[str, Any]) -> set[str]:
    """The input's keys whose values are messages (each converted once)."""
    return {key for key, item in value.items() if _is_messages(item)}


def _fields(schema: Any) -> dict[str, Any] | None:
    """The input schema's fields and their types, if it is a class that has them."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {name: f.annotation for name, f in schema.model_fields.items()}
    try:
        hints = get_type_hints(schema, include_extras=True)
    except Exception:  # not a TypedDict, dataclass or class with annotations
        return None
    return hints or None


def check_input(entry: GraphEntry, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """`value` if the graph takes it; raises Invalid (422) naming the field, or
    the content block its model cannot take."""
    if value is None:
        return value
    messages = _messages_keys(value)
    if not entry.per_run:
        _check_fields(entry, value, messages)
    _check_blocks(entry, value, messages)
    return value


def _check_fields(entry: GraphEntry, value: dict[str, Any], messages: set[str]) -> None:
    graph = entry.compiled(None)
    channel = graph.channels.get(graph.input_channels) if isinstance(
        graph.input_channels, str) else None
    fields = _fields(channel.UpdateType) if isinstance(channel, BaseChannel) else None
    if fields is None:
        return  # no schema to check against: the graph will
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise Invalid(f"input.{unknown[0]}: not an input of graph "
                      f"{entry.graph_id!r} (its inputs: {', '.join(sorted(fields))})")
    for key, item in value.items():
        adapter = _adapter(entry.graph_id, key, fields[key])
        if adapter is None:
            continue
        try:
            adapter.validate_python(item)
        except (ValidationError, TypeError, ValueError) as exc:
            if key in messages:
                continue
            if not isinstance(exc, ValidationError):
                raise Invalid(f"input.{key}: {exc}") from None
            error = exc.errors()[0]
            where = ".".join(str(p) for p in ("input", key, *error["loc"]))
            raise Invalid(f"{where}: {error['msg']}") from None


def _check_blocks(entry: GraphEntry, value: dict[str, Any], messages: set[str]) -> None:
    """Raises Invalid naming the first content block of an input message whose
    type the graph's model does not take (an image to a text-only model)."""
    takes = entry.content_blocks
    if takes is None:
        return
    for key in sorted(messages, key=list(value).index):
        item = value[key]
        for m, message in enumerate(item if isinstance(item, list) else [item]):
            content = message.get("content") if isinstance(message, dict) else None
            for b, block in enumerate(content if isinstance(content, list) else []):
                kind = block.get("type") if isinstance(block, dict) else "text"
                if kind not in takes:
                    where = f"input.{key}.{m}.content.{b}" if isinstance(item, list) else \
                        f"input.{key}.content.{b}"
                    raise Invalid(f"{where}: a {kind!r} block, which graph {entry.graph_id!r}'s "
                                  f"model does not take (it takes: {', '.join(sorted(takes))})")


def first_text(value: dict[str, Any] | None) -> str:
    """The text of the input's first human message, "" without one: what names
    a new thread in its owner's list."""
    messages = (value or {}).get("messages")
    if not messages or not _is_messages(messages):
        return ""
    for message in convert_to_messages(messages if isinstance(messages, list) else [messages]):
        if message.type == "human":
            return message.text
    return ""
