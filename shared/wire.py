"""Graph values as JSON, the way the LangGraph Server shows them.

LangChain messages and other pydantic models become their `model_dump()`,
dataclasses (LangGraph's `Interrupt`, `Send`) their fields, sets and tuples
lists; anything else that JSON has no form for becomes its `str()`, so an
event is never lost to a value the client could not have read anyway.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return list(value)
    if hasattr(value, "_asdict"):  # NamedTuple: a StateSnapshot, a PregelTask
        return value._asdict()
    return str(value)


def dumps(value: Any) -> str:
    """`value` as JSON text."""
    return orjson.dumps(value, default=_default, option=_OPTIONS).decode()


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types (dicts, lists, strings, numbers)."""
    return orjson.loads(orjson.dumps(value, default=_default, option=_OPTIONS))
