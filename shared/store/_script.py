"""Lua scripts whose KEYS and ARGV are named on both sides.

A script lists the names of its keys and arguments once; its Lua starts
with them bound to locals (`local job, events = KEYS[1], KEYS[2]`), and the
Python side calls it with the same names as keywords, so neither reads a
position out of a comment. Arguments past the named ones (field/value pairs)
go in `rest`, and the Lua finds them from `REST`, the first of their positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.typing import EncodableT

# Redis's clock, for a script that stamps or compares a time: every gateway
# and worker then agrees on it, whatever its own clock says.
NOW = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
"""


def _bind(names: Sequence[str], table: str) -> str:
    if not names:
        return ""
    places = ", ".join(f"{table}[{i}]" for i in range(1, len(names) + 1))
    return f"local {', '.join(names)} = {places}\n"


class Script:
    """A Lua script registered on `redis`, called with its keys and
    arguments by name (see the module's docstring)."""

    def __init__(self, redis: Redis, keys: Sequence[str], args: Sequence[str],
                 body: str) -> None:
        self.keys, self.args = tuple(keys), tuple(args)
        self._names = frozenset((*self.keys, *self.args))
        source = (_bind(self.keys, "KEYS") + _bind(self.args, "ARGV")
                  + f"local REST = {len(self.args) + 1}\n" + body)
        self._script = redis.register_script(source)

    async def __call__(self, rest: Sequence[EncodableT] = (), **named: EncodableT) -> Any:
        """Runs the script."""
        if named.keys() != self._names:
            raise TypeError(f"the script takes {self.keys + self.args}, got {tuple(named)}")
        return await self._script(keys=[str(named[k]) for k in self.keys],
                                  args=[*(named[a] for a in self.args), *rest])
