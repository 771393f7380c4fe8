"""The reference LangGraph Server (`langgraph dev`), and a diff of its answers and ours.

`langgraph-cli[inmem]` is installed once, pinned to the langgraph and
langgraph-api versions this repository matches, into a virtualenv outside
the checkout (`~/.cache/s3-chat-backend/langgraph-dev-<version>`, under
XDG_CACHE_HOME when set): it is not a dependency of ours, and its pins would
fight ours in one environment.

`Pair` sends the same request to both servers and compares what a client
reads: the status code; JSON keys, recursively, and values, except those
that are ids or times (their type still counts); for a stream, the sequence
of event names and each event's data the same way. Differences a test
accepts are named in an allow-list of path patterns, each with its reason.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests import servers
from tests.sse import parse_lines

# langgraph-api 0.16.7 is the release whose server our shapes follow (and
# langgraph 1.2.24, langchain-core 1.8.3 are ours: the graphs run the same code).
API_VERSION = "0.16.7"
PINS = ["langgraph-cli[inmem]==0.4.40", f"langgraph-api=={API_VERSION}", "langgraph==1.2.24",
        "langgraph-checkpoint==4.3.2", "langchain-core==1.8.3"]
# Keeps `langgraph dev` from calling out: no LangSmith tracing (nor a key to
# trace with), no CLI analytics, no PyPI version check at start, no
# OpenTelemetry export (it turns that on when an OTLP endpoint is set).
OFFLINE_ENV = {"LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false",
               "LANGSMITH_API_KEY": "", "LANGCHAIN_API_KEY": "",
               "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1",
               "OTEL_ENABLED": "false"}


class Unavailable(Exception):
    """`langgraph-cli[inmem]` could not be installed (PyPI out of reach)."""


def reference_venv() -> Path:
    """The reference server's virtualenv, installed on first use.

    A marker written after the install says it is whole: a venv cannot be
    moved into place (its scripts name their own path), so an interrupted
    install is made again rather than trusted.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "s3-chat-backend" / f"langgraph-dev-{API_VERSION}"
    marker = venv / "installed.txt"
    if marker.is_file() and marker.read_text() == "\n".join(PINS):
        return venv
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise Unavailable(f"python -m venv failed: {made.stderr[-500:]}")
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PINS],
                               capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        raise Unavailable(f"pip could not install {PINS[0]}: {installed.stderr[-800:]}")
    marker.write_text("\n".join(PINS))
    return venv


def start_reference(venv: Path, config: Path, logdir: Path) -> servers.Server:
    """`langgraph dev` serving the graphs of `config`, on a free loopback port."""
    port = servers.free_port()
    argv = [str(venv / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload",
            "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    # Its own virtualenv, not ours: a VIRTUAL_ENV of ours would mislead it.
    env = {**OFFLINE_ENV, "VIRTUAL_ENV": str(venv),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    # It finds a graph's "./file.py" from its working directory, not from the file.
    return servers.Server("langgraph-dev", argv, port, logdir / "langgraph-dev.log", env,
                          cwd=config.parent).start(timeout=90)


# --- comparing answers ----------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
# Keys whose number is a time (or a count of time): its type is compared, not its value.
TIME_KEYS = {"created_at", "updated_at", "ts", "timestamp", "time", "state_updated_at",
             "started_at", "finished_at"}


def _scalar(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _TIME.sub("<time>", _UUID.sub("<id>", value))
    if isinstance(value, int | float) and not isinstance(value, bool) and key in TIME_KEYS:
        return f"<{type(value).__name__}>"
    return value


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


# A difference: where (a JSON path) and what.
Difference = tuple[str, str]


def diff(ours: Any, theirs: Any, path: str = "$") -> Iterator[Difference]:
    """Where two JSON values differ; ids and times compare by type only."""
    if _kind(ours) != _kind(theirs):
        yield path, (f"ours {_kind(ours)} {_short(ours)}, "
                     f"reference {_kind(theirs)} {_short(theirs)}")
    elif isinstance(ours, dict):
        # Keys that are ids (a message's, a task's) are compared as ids too.
        mine, yours = _by_key(ours), _by_key(theirs)
        for key in sorted(mine.keys() | yours.keys()):
            sub = f"{path}.{key}"
            if key not in yours:
                yield sub, "only ours"
            elif key not in mine:
                yield sub, "only the reference"
            else:
                yield from diff(mine[key], yours[key], sub)
    elif isinstance(ours, list):
        if len(ours) != len(theirs):
            yield path, f"ours {len(ours)} items, reference {len(theirs)}"
        for n, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            yield from diff(a, b, f"{path}[{n}]")
    else:
        key = path.rsplit(".", 1)[-1]
        if _scalar(key, ours) != _scalar(key, theirs):
            yield path, f"ours {_short(ours)}, reference {_short(theirs)}"


def _by_key(value: dict[str, Any]) -> dict[str, Any]:
    return {_scalar("", key): item for key, item in value.items()}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Answer:
    """What a client read: the status, and the JSON body or the stream's events
    as [{"event": name, "data": data}]."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def read(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Answer:
    with client.stream(method, path, **kwargs) as reply:
        if reply.headers.get("content-type", "").startswith("text/event-stream"):
            events = [{"event": e.type, "data": e.data} for e in parse_lines(reply.iter_lines())]
            return Answer(reply.status_code, events, reply.headers)
        reply.read()
        try:
            body = reply.json() if reply.content.strip() else None
        except ValueError:
            body = reply.text
        return Answer(reply.status_code, body, reply.headers)


def _is_stream(answer: Answer) -> bool:
    return answer.headers.get("content-type", "").startswith("text/event-stream")


def _stream_diff(ours: list[dict[str, Any]],
                 theirs: list[dict[str, Any]]) -> Iterator[Difference]:
    """Events only one side sent, by name and position; the data of the events
    both sent, pairwise."""
    names = [_scalar("", e["event"]) for e in ours], [_scalar("", e["event"]) for e in theirs]
    matcher = difflib.SequenceMatcher(None, *names, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op != "equal":
            yield (f"$.events[{a1}:{a2}]",
                   f"ours {names[0][a1:a2]}, reference's [{b1}:{b2}] {names[1][b1:b2]}")
            continue
        for a, b in zip(range(a1, a2), range(b1, b2), strict=True):
            yield from diff(ours[a]["data"], theirs[b]["data"], f"$.events[{a}]:{names[0][a]}")


def compare(ours: Answer, theirs: Answer) -> Iterator[Difference]:
    """Where the answers differ. Error bodies compare by status only: the text
    of `detail` is each server's own."""
    if ours.status != theirs.status:
        yield "$.status", f"ours {ours.status}, reference {theirs.status}"
    if ours.status >= 400 or theirs.status >= 400:
        return
    if _is_stream(ours) or _is_stream(theirs):
        yield from _stream_diff(ours.body, theirs.body)
    else:
        yield from diff(ours.body, theirs.body, "$.body")


@dataclass
class Pair:
    """Our gateway and the reference, asked the same things."""

    ours: httpx.Client
    theirs: httpx.Client
    allowed: Mapping[str, str]
    # Per request, the differences found: the test's failure message lists them all.
    found: list[str] = field(default_factory=list)

    def ask(self, method: str, path: str, ids: tuple[Mapping[str, str], Mapping[str, str]]
            = ({}, {}), allowed: Mapping[str, str] | None = None,
            **kwargs: Any) -> tuple[Answer, Answer]:
        """Sends the request to both (`path` formatted with each side's ids:
        a run or checkpoint id differs between them) and records the differences."""
        # Both at once: a run's time is mostly waiting (the reference's queue polls).
        with ThreadPoolExecutor(2) as pool:
            asked = [pool.submit(read, client, method, path.format(**side), **kwargs)
                     for client, side in ((self.ours, ids[0]), (self.theirs, ids[1]))]
            ours, theirs = (a.result() for a in asked)
        rules = [*self.allowed, *(allowed or {})]
        for where, what in compare(ours, theirs):
            named = f"{method} {_UUID.sub('<id>', path)}: {where}"
            if not any(fnmatch.fnmatchcase(named, rule) for rule in rules):
                self.found.append(f"{named}: {what}")
        return ours, theirs

    def check(self) -> None:
        """Fails with every difference found since the last check."""
        found, self.found = self.found, []
        assert not found, "differences from langgraph dev:\n" + "\n".join(found)
