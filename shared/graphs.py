"""The graphs this service runs, as `langgraph.json` declares them (the LangGraph CLI's format).

`LANGGRAPH_CONFIG` names the file; its `graphs` object maps a graph id to
`"./path/to/file.py:attr"` (relative to the file) or `"package.module:attr"`.
The attribute is a `StateGraph`, a compiled graph, or a function of a
`RunnableConfig` returning either (called for each run). The built-in chat
graph is there as `chat` unless the file declares a graph of that id.

Every process loads the registry once, at start, and a graph that cannot be
imported stops it with one line naming the graph and the error. The gateway
uses the graphs for their drawings, schemas and state; the workers run them.
Either way a graph is compiled with the checkpointer the process gives it
(a compiled graph's own checkpointer is replaced).

A graph's module may define `content_block_types()`, the types of content
block its model takes (`{"text", "image"}`...): the gateway then refuses a
run whose input messages hold others, before anything is queued.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

BUILTIN_GRAPHS = {"chat": "graphs.chat:graph"}
# What a graph's module may define to say which content blocks its model takes.
CONTENT_BLOCK_TYPES = "content_block_types"
# The name LangGraph gives a compiled graph that was not named.
_DEFAULT_NAME = "LangGraph"
# The namespace the LangGraph Server derives default assistants' ids in, so a
# client that kept an assistant id from `langgraph dev` finds the same one here.
_ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


# A compiled graph, whatever its state and context types.
Graph = Pregel[Any, Any, Any, Any]


class GraphLoadError(Exception):
    """A graph of langgraph.json could not be loaded; the message says which and why."""


def assistant_id_of(graph_id: str) -> str:
    """The id of a graph's default assistant, derived from the graph id as the
    LangGraph Server derives it."""
    return str(uuid.uuid5(_ASSISTANT_NAMESPACE, graph_id))


@dataclass
class GraphEntry:
    """One declared graph: its id, where it was found, and what was found there."""

    graph_id: str
    spec: str
    target: Any
    description: str | None = None
    # The graph's module's `content_block_types`, if it has one (see content_blocks).
    _content_block_types: Callable[[], Iterable[str] | None] | None = None
    _compiled: dict[int, Graph] = field(default_factory=dict, repr=False)

    @property
    def assistant_id(self) -> str:
        return assistant_id_of(self.graph_id)

    @cached_property
    def content_blocks(self) -> frozenset[str] | None:
        """The types of content block the graph's messages may hold, if its
        module says (a function `content_block_types()`); None: any."""
        if not callable(self._content_block_types):
            return None
        kinds = self._content_block_types()
        return frozenset(kinds) if kinds is not None else None

    @property
    def per_run(self) -> bool:
        """A function of the run's config: each run builds its graph."""
        return not isinstance(self.target, StateGraph | Pregel) and callable(self.target)

    def compiled(self, checkpointer: BaseCheckpointSaver[Any] | None,
                 config: RunnableConfig | None = None) -> Graph:
        """The graph with `checkpointer`; built once per checkpointer unless it
        is a function of the run's `config`."""
        if not self.per_run:
            key = id(checkpointer)
            graph = self._compiled.get(key)
            if graph is None:
                graph = self._compiled[key] = _with_saver(self.target, checkpointer, self)
            return graph
        made = self.target(config or {})
        if inspect.isawaitable(made):
            raise GraphLoadError(f"graph {self.graph_id!r}: an async graph factory is not "
                                 "supported; return the graph from a plain function")
        return _with_saver(made, checkpointer, self)


def _with_saver(target: Any, checkpointer: BaseCheckpointSaver[Any] | None,
                entry: GraphEntry) -> Graph:
    # A graph left with LangGraph's default name takes its graph id, as the
    # LangGraph Server names it: the root run, its events and its schemas'
    # titles ("counter_state") say which graph they are.
    if isinstance(target, StateGraph):
        return target.compile(checkpointer=checkpointer, name=entry.graph_id)
    if isinstance(target, Pregel):
        update: dict[str, Any] = {"checkpointer": checkpointer}
        if target.name == _DEFAULT_NAME:
            update["name"] = entry.graph_id
        return target.copy(update)
    raise GraphLoadError(f"graph {entry.graph_id!r} ({entry.spec}): is a "
                         f"{type(target).__name__}, not a StateGraph, a compiled graph, "
                         "or a function of a RunnableConfig returning one")


def _import(spec: str, base: Path | None) -> tuple[Any, ModuleType]:
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError('expected "./path/to/file.py:attr" or "package.module:attr"')
    if where.endswith(".py"):
        path = (base / where).resolve() if base is not None else Path(where).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        name = f"langgraph_user_graph_{uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex}"
        module = sys.modules.get(name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(name, path)
            assert file_spec is not None and file_spec.loader is not None
            module = importlib.util.module_from_spec(file_spec)
            # The graph's own file may import its neighbours, as under `langgraph dev`.
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            sys.modules[name] = module
            try:
                file_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        module = importlib.import_module(where)
    try:
        return getattr(module, attr), module
    except AttributeError:
        raise AttributeError(f"{where} has no attribute {attr!r}") from None


def _declared(config_path: Path | None) -> tuple[dict[str, Any], Path | None]:
    if config_path is None:
        return {}, None
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise GraphLoadError(f"LANGGRAPH_CONFIG {config_path}: {exc}") from None
    graphs = raw.get("graphs") if isinstance(raw, dict) else None
    if not isinstance(graphs, dict) or not graphs:
        raise GraphLoadError(f'LANGGRAPH_CONFIG {config_path}: needs a "graphs" object '
                             'mapping graph ids to "file.py:attr" or "module:attr"')
    return graphs, config_path.parent


class GraphRegistry:
    """The declared graphs by id, loaded once."""

    def __init__(self, entries: dict[str, GraphEntry]) -> None:
        self.entries = entries
        self._by_assistant = {e.assistant_id: e for e in entries.values()}

    @classmethod
    def load(cls, config_path: str | Path | None) -> GraphRegistry:
        """Imports every graph of the file (and the built-in ones it does not
        replace); raises GraphLoadError naming the first that fails."""
        declared, base = _declared(Path(config_path) if config_path else None)
        entries: dict[str, GraphEntry] = {}
        for graph_id, spec in {**BUILTIN_GRAPHS, **declared}.items():
            description = None
            if isinstance(spec, dict):  # {"path": ..., "description": ...}
                description, spec = spec.get("description"), spec.get("path")
            if not isinstance(spec, str):
                raise GraphLoadError(f"graph {graph_id!r}: expected a string "
                                     '"file.py:attr" or "module:attr"')
            try:
                target, module = _import(spec, base if graph_id in declared else None)
            except Exception as exc:
                raise GraphLoadError(f"graph {graph_id!r} ({spec}) cannot be loaded: "
                                     f"{type(exc).__name__}: {exc}") from exc
            entry = GraphEntry(graph_id, spec, target, description,
                               getattr(module, CONTENT_BLOCK_TYPES, None))
            if not entry.per_run:
                _with_saver(target, None, entry)  # refuses what is not a graph, now
            entries[graph_id] = entry
        return cls(entries)

    def find(self, graph_or_assistant_id: str) -> GraphEntry | None:
        """The graph named by its id or by its default assistant's id."""
        return (self.entries.get(graph_or_assistant_id)
                or self._by_assistant.get(graph_or_assistant_id))


_loaded: dict[str | None, GraphRegistry] = {}


def load_registry(config_path: str | None, chat_graph_id: str | None = None) -> GraphRegistry:
    """The process's registry for `config_path`, loaded on first use.

    A graph that cannot be loaded, or a `chat_graph_id` that names none,
    stops the process with one line saying so.
    """
    registry = _loaded.get(config_path)
    if registry is None:
        try:
            registry = _loaded[config_path] = GraphRegistry.load(config_path)
        except GraphLoadError as exc:
            _exit_with(str(exc))
    if chat_graph_id is not None and chat_graph_id not in registry.entries:
        _exit_with(f"CHAT_GRAPH_ID: no graph {chat_graph_id!r} is declared "
                   f"(graphs: {', '.join(sorted(registry.entries))})")
    return registry


def _exit_with(reason: str) -> NoReturn:
    print(reason.splitlines()[0], file=sys.stderr)
    raise SystemExit(2)
