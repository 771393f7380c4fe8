"""The S3 saver against a model: LangGraph's ``InMemorySaver``, driven by the same random steps.

Hypothesis' stateful testing runs random sequences of put, put_writes,
get_tuple, list, copy_thread, prune and delete_thread on both, and every read
must answer the same; puts fork from earlier checkpoints (a run started from
one: a branch) as well as follow the latest. ``InMemorySaver`` has no copy or prune: the model does
them on its storage, as the conformance suite expects of a saver (a copy
merges into the target, a prune keeps each namespace's latest checkpoint,
which then has no parent). The S3 saver keeps a transcript with tiny
segments all along, so sealing runs under every operation, and its pages
must always read back.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import ERROR

from shared.checkpoint import S3Saver

THREADS = st.sampled_from(["t1", "t2", "t3"])
NAMESPACES = st.sampled_from(["", "child:1"])
WORDS = st.lists(st.sampled_from(["hi", "yes", "no", "ok", "why"]), min_size=0, max_size=3)


def view(found: CheckpointTuple | None) -> Any:
    """What a reader sees of a checkpoint tuple."""
    if found is None:
        return None
    checkpoint = found.checkpoint
    return (found.config, checkpoint["id"], checkpoint["channel_values"],
            checkpoint["channel_versions"], found.metadata, found.parent_config,
            found.pending_writes)


def config(thread_id: str, ns: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


class SaverModel(InMemorySaver):
    """``InMemorySaver`` with the copy and prune the conformance suite specifies."""

    def copy_thread(self, source: str, target: str) -> None:
        for ns, checkpoints in list(self.storage[source].items()):
            self.storage[target][ns].update(checkpoints)
        for key, writes in list(self.writes.items()):
            if key[0] == source:
                self.writes[(target, *key[1:])] = dict(writes)
        for key, blob in list(self.blobs.items()):
            if key[0] == source:
                self.blobs[(target, *key[1:])] = blob

    def prune_keep_latest(self, thread_id: str) -> None:
        for ns, checkpoints in self.storage[thread_id].items():
            latest = max(checkpoints, default=None)
            for checkpoint_id in [c for c in checkpoints if c != latest]:
                del checkpoints[checkpoint_id]
                self.writes.pop((thread_id, ns, checkpoint_id), None)
            if latest is not None:
                checkpoint, metadata, _ = checkpoints[latest]
                checkpoints[latest] = (checkpoint, metadata, None)


class SaverMachine(RuleBasedStateMachine):
    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__()
        self.saver = S3Saver(client, bucket, f"{uuid.uuid4().hex[:12]}/",
                             transcript="messages", segment_size=2)
        self.model = SaverModel()
        self.versions = itertools.count(1)
        self.steps = itertools.count()

    def existing(self, thread_id: str, ns: str) -> list[str]:
        return sorted(self.model.storage[thread_id][ns])

    @rule(thread_id=THREADS, ns=NAMESPACES, words=WORDS, parent=st.integers(0, 20),
          source=st.sampled_from(["loop", "input"]))
    def put(self, thread_id: str, ns: str, words: list[str], parent: int, source: str) -> None:
        existing = self.existing(thread_id, ns)
        parent_id = existing[-1 - parent % len(existing)] if existing and parent else None
        self._put(thread_id, ns, words, parent_id, source)

    @rule(thread_id=THREADS, ns=NAMESPACES, words=WORDS, back=st.integers(1, 20))
    def fork(self, thread_id: str, ns: str, words: list[str], back: int) -> None:
        """A run from an earlier checkpoint: a branch beside the latest one."""
        existing = self.existing(thread_id, ns)
        if len(existing) < 2:
            return
        self._put(thread_id, ns, words, existing[-1 - (1 + back % (len(existing) - 1))], "fork")

    def _put(self, thread_id: str, ns: str, words: list[str], parent_id: str | None,
             source: str) -> None:
        messages: list[str] = []
        if parent_id is not None:
            stored = self.model.get_tuple(config(thread_id, ns, parent_id))
            assert stored is not None
            messages = list(stored.checkpoint["channel_values"].get("messages", []))
        checkpoint = empty_checkpoint()
        step = next(self.steps)
        checkpoint["channel_values"] = {"messages": [*messages, *words], "step": step}
        checkpoint["channel_versions"] = {
            "messages": f"{next(self.versions):032}.0", "step": f"{next(self.versions):032}.0"}
        metadata: Any = {"source": source, "step": step}
        versions = dict(checkpoint["channel_versions"])
        target = config(thread_id, ns, parent_id)
        assert self.saver.put(target, checkpoint, metadata, versions) == self.model.put(
            target, checkpoint, metadata, versions)

    @rule(thread_id=THREADS, ns=NAMESPACES, pick=st.integers(0, 20),
          task_id=st.sampled_from(["a", "b"]),
          writes=st.lists(st.tuples(st.sampled_from(["messages", ERROR]), st.integers(0, 9)),
                          min_size=1, max_size=3))
    def put_writes(self, thread_id: str, ns: str, pick: int, task_id: str,
                   writes: list[tuple[str, int]]) -> None:
        existing = self.existing(thread_id, ns)
        if not existing:
            return
        target = config(thread_id, ns, existing[pick % len(existing)])
        self.saver.put_writes(target, writes, task_id, "path")
        self.model.put_writes(target, writes, task_id, "path")

    @rule(thread_id=THREADS, ns=NAMESPACES, pick=st.integers(-1, 20))
    def get_tuple(self, thread_id: str, ns: str, pick: int) -> None:
        existing = self.existing(thread_id, ns)
        checkpoint_id = existing[pick % len(existing)] if existing and pick >= 0 else None
        target = config(thread_id, ns, checkpoint_id)
        assert view(self.saver.get_tuple(target)) == view(self.model.get_tuple(target))

    @rule(thread_id=THREADS, ns=NAMESPACES, limit=st.none() | st.integers(1, 4),
          source=st.none() | st.sampled_from(["loop", "input", "fork"]),
          before=st.integers(-1, 20))
    def list(self, thread_id: str, ns: str, limit: int | None, source: str | None,
             before: int) -> None:
        existing = self.existing(thread_id, ns)
        before_config = (config(thread_id, ns, existing[before % len(existing)])
                         if existing and before >= 0 else None)
        options: Any = {"limit": limit, "before": before_config,
                        "filter": {"source": source} if source else None}
        target = config(thread_id, ns)
        assert [view(t) for t in self.saver.list(target, **options)] == [
            view(t) for t in self.model.list(target, **options)]

    @rule(source=THREADS, into=THREADS)
    def copy_thread(self, source: str, into: str) -> None:
        if source == into:
            return
        self.saver.copy_thread(source, into)
        self.model.copy_thread(source, into)

    @rule(thread_id=THREADS)
    def prune(self, thread_id: str) -> None:
        self.saver.prune([thread_id])
        self.model.prune_keep_latest(thread_id)

    @rule(thread_id=THREADS)
    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)
        self.model.delete_thread(thread_id)

    @rule(thread_id=THREADS, limit=st.integers(1, 3))
    def transcript_pages_read_back(self, thread_id: str, limit: int) -> None:
        before = None
        while True:
            page = self.saver.get_transcript(thread_id, before=before, limit=limit)
            if page is None:  # the transcript of the root namespace, which has no checkpoint
                assert not self.model.storage[thread_id][""]
                return
            assert len(page.entries) <= limit
            if page.start == 0:
                return
            before = page.start


def test_the_saver_answers_every_read_as_the_model_does(sync_client: Any, bucket: str) -> None:
    run_state_machine_as_test(
        lambda: SaverMachine(sync_client, bucket),
        settings=settings(max_examples=40, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
