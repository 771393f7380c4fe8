"""The saver's decisions (request budget, spills, races, lost replies) on a fake S3.

``FakeS3Client`` is a fake: a dict that answers the five boto3 calls the saver
makes with S3's conditional semantics. Plans are generators, so a race
between two writers can be staged request by request.
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import ormsgpack
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint

from shared.checkpoint import CheckpointConflict, RetryPolicy, S3Saver
from shared.checkpoint import _plans as plans
from shared.checkpoint._codec import MAGIC
from shared.checkpoint._requests import Locked, Plan, Put, Request

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


def _error(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


class FakeS3Client:
    """A fake boto3 S3 client: objects in a dict, conditional requests as S3 answers them."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.calls: Counter[str] = Counter()
        self.put_bytes = 0
        # Keys whose next PUT is applied but its reply lost (a connection reset).
        self.lose_reply_of: set[str] = set()

    def get_object(self, Bucket: str, Key: str, IfMatch: str | None = None,
                   IfNoneMatch: str | None = None) -> dict[str, Any]:
        self.calls["GetObject"] += 1
        if Key not in self.objects:
            raise _error("NoSuchKey", 404, "GetObject")
        body, etag = self.objects[Key]
        if IfMatch is not None and IfMatch != etag:
            raise _error("PreconditionFailed", 412, "GetObject")
        if IfNoneMatch is not None and IfNoneMatch == etag:
            raise _error("304", 304, "GetObject")
        return {"Body": io.BytesIO(body), "ETag": etag}

    def put_object(self, Bucket: str, Key: str, Body: bytes, IfMatch: str | None = None,
                   IfNoneMatch: str | None = None) -> dict[str, Any]:
        self.calls["PutObject"] += 1
        current = self.objects.get(Key)
        if IfMatch is not None and current is None:
            raise _error("NoSuchKey", 404, "PutObject")
        if (IfMatch is not None and current is not None and IfMatch != current[1]) or (
            IfNoneMatch == "*" and current is not None
        ):
            raise _error("PreconditionFailed", 412, "PutObject")
        etag = f'"{hashlib.md5(Body).hexdigest()}"'
        self.objects[Key] = (Body, etag)
        self.put_bytes += len(Body)
        if Key in self.lose_reply_of:
            self.lose_reply_of.discard(Key)
            raise EndpointConnectionError(endpoint_url="fake")
        return {"ETag": etag}

    def get_paginator(self, name: str) -> Any:
        client = self

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
                client.calls["ListObjectsV2"] += 1
                yield {"Contents": [{"Key": k} for k in sorted(client.objects)
                                    if k.startswith(Prefix)]}

        return Paginator()

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        self.calls["DeleteObjects"] += 1
        for entry in Delete["Objects"]:
            self.objects.pop(entry["Key"], None)
        return {}

    def head_bucket(self, Bucket: str) -> None:
        self.calls["HeadBucket"] += 1

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


def new_saver(client: FakeS3Client, **options: Any) -> S3Saver:
    return S3Saver(client, "bucket", "p", retry=NO_WAIT, **options)


def thread(thread_id: str = "t1") -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def turn(saver: S3Saver, n: int, history: list[Any] | None = None,
         parent: RunnableConfig | None = None) -> RunnableConfig:
    """One chat turn as the worker does it: read the latest, write one checkpoint.

    With ``history`` (the caller's copy of the messages, extended here), the
    read is skipped and the saver loads what it needs itself: long
    conversations stay fast to test.
    """
    if history is None:
        latest = saver.get_tuple(thread())
        history = list(latest.checkpoint["channel_values"]["messages"]) if latest else []
        parent = latest.config if latest else None
    # Random text, so deflate cannot hide how much each turn stores.
    history += [HumanMessage(f"question {n} {os.urandom(24).hex()}", id=f"h{n}"),
                AIMessage(f"answer {n} {os.urandom(48).hex()}", id=f"a{n}")]
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": list(history), "language": "English"}
    checkpoint["channel_versions"] = {"messages": saver.get_next_version(n, None),
                                      "language": "1"}
    return saver.put(parent or thread(), checkpoint, {"step": n, "source": "loop"}, {})


@pytest.mark.parametrize("keep_last", [None, 5])
def test_a_turn_costs_at_most_three_requests_and_history_two(keep_last: int | None) -> None:
    client = FakeS3Client()
    per_turn = []
    for n in range(80):
        turn(new_saver(client, keep_last=keep_last), n)  # each turn on a fresh worker
        per_turn.append(client.take())
    assert max(sum(c.values()) for c in per_turn) == 3  # spills and deltas happened
    assert all(set(c) <= {"GetObject", "PutObject"} for c in per_turn)  # never a LIST
    assert all(c["PutObject"] >= 1 for c in per_turn)

    latest = new_saver(client).get_tuple(thread())
    assert 1 <= client.take()["GetObject"] <= 2
    assert latest is not None and len(latest.checkpoint["channel_values"]["messages"]) == 160


def test_a_warm_saver_reads_with_one_conditional_get() -> None:
    client = FakeS3Client()
    saver = new_saver(client)
    for n in range(40):
        turn(saver, n)
    client.take()
    turn(saver, 40)
    calls = client.take()
    assert calls["GetObject"] == 1 and sum(calls.values()) <= 3


def test_bytes_per_turn_grow_no_faster_than_the_square_root_of_the_length() -> None:
    # Reading in at most 2 GETs without an append primitive, a turn cannot upload
    # O(1) bytes: delta heads grow until a compaction pays off (see _plans).
    client = FakeS3Client()
    uploads: list[int] = []
    history: list[Any] = []
    parent = None
    for n in range(600):
        before = client.put_bytes
        parent = turn(new_saver(client, keep_last=20), n, history, parent)
        uploads.append(client.put_bytes - before)
    early, late = uploads[50:100], uploads[500:600]
    growth = (550 / 75) ** 0.5  # 7.3 times the messages
    assert statistics.median(late) < growth * statistics.median(early)
    assert statistics.mean(late) < growth * statistics.mean(early)  # compactions included
    conversation = sum(len(body) for body, _ in client.objects.values())
    assert statistics.mean(late) < conversation / 10


def test_keep_last_prunes_old_checkpoints_but_not_history() -> None:
    client = FakeS3Client()
    saver = new_saver(client, keep_last=3)
    for n in range(10):
        turn(saver, n)
    listed = list(new_saver(client).list(thread()))
    assert [t.metadata["step"] for t in listed] == [9, 8, 7]
    assert len(listed[0].checkpoint["channel_values"]["messages"]) == 20
    assert listed[-1].parent_config is None  # its parent was pruned


def test_a_lost_reply_to_a_landed_put_is_not_a_conflict() -> None:
    client = FakeS3Client()
    saver = new_saver(client)
    turn(saver, 0)
    client.lose_reply_of.add(saver.keys.head("t1", ""))
    turn(saver, 1)  # retried, answered 412 by its own first try, checked by token
    latest = new_saver(client).get_tuple(thread())
    assert latest is not None and latest.metadata["step"] == 1


class Stepper:
    """Drives a plan by hand, flattening locks, to interleave two writers."""

    def __init__(self, saver: S3Saver, plan: Plan[Any]) -> None:
        self.saver = saver
        self.stack: list[Plan[Any]] = [plan]
        self.reply: Any = None
        self.error: BaseException | None = None
        self.next: Request | None = None
        self.result: Any = None

    def run_until(self, wanted: Callable[[Request], bool] = lambda r: False) -> Stepper:
        """Run until the next request is ``wanted`` (not sent yet), or the plan ends."""
        while self.stack:
            if self.next is None:
                self.next = self._advance()
                if self.next is None:
                    continue
            if wanted(self.next):
                return self
            self._send()
        return self

    def send_one(self) -> Stepper:
        self._send()
        return self

    def _advance(self) -> Request | None:
        plan = self.stack[-1]
        try:
            step = plan.throw(self.error) if self.error else plan.send(self.reply)
        except StopIteration as stop:
            self.stack.pop()
            self.reply, self.error, self.result = stop.value, None, stop.value
            return None
        except Exception as exc:
            self.stack.pop()
            self.error = exc
            if not self.stack:
                self.result = exc
            return None
        self.reply, self.error = None, None
        if isinstance(step, Locked):
            self.stack.append(step.plan)
            return None
        assert not isinstance(step, Locked)
        return step  # type: ignore[return-value]

    def _send(self) -> None:
        request, self.next = self.next, None
        assert request is not None
        try:
            self.reply = self.saver._store.execute(request)
        except Exception as exc:
            self.error = exc


def put_plan(saver: S3Saver, n: int) -> Plan[Any]:
    latest = saver.get_tuple(thread())
    assert latest is not None
    checkpoint: Checkpoint = empty_checkpoint()
    history = latest.checkpoint["channel_values"]["messages"]
    filler = os.urandom(200).hex()  # enough to push the head past the spill size
    checkpoint["channel_values"] = {"messages": [*history, HumanMessage(filler, id=f"x{n}")]}
    checkpoint["channel_versions"] = {"messages": saver.get_next_version(1000 + n, None)}
    return plans.put(saver, latest.config, checkpoint, {"step": n}, {})


def is_put_to(fragment: str) -> Callable[[Request], bool]:
    return lambda r: isinstance(r, Put) and fragment in r.key


def spill_ready(client: FakeS3Client) -> None:
    """Grow a thread to the turn before its first spill, and stop there."""
    for n in range(1000):
        before = dict(client.objects)
        turn(new_saver(client), n)
        if any("/base/" in key for key in client.objects):
            client.objects = before
            return
    raise AssertionError("the head never spilled")


@pytest.mark.parametrize("head_first", ["A", "B"])
def test_two_writers_spilling_at_once_leave_one_consistent_thread(head_first: str) -> None:
    client = FakeS3Client()
    spill_ready(client)
    a, b = new_saver(client), new_saver(client)
    run_a = Stepper(a, put_plan(a, 1)).run_until(is_put_to("/base/"))
    run_b = Stepper(b, put_plan(b, 2)).run_until(is_put_to("/base/"))
    run_a.send_one()  # A takes the slot
    run_b.run_until(is_put_to("/head"))  # B finds the slot taken: it will adopt, not overwrite
    run_a.run_until(is_put_to("/head"))
    first, second = (run_a, run_b) if head_first == "A" else (run_b, run_a)
    first.run_until()
    second.run_until()
    assert not isinstance(first.result, Exception)
    assert isinstance(second.result, CheckpointConflict)

    latest = new_saver(client).get_tuple(thread())  # readable: no base mismatch
    assert latest is not None
    winner = "x1" if head_first == "A" else "x2"
    assert latest.checkpoint["channel_values"]["messages"][-1].id == winner
    # The thread goes on, spilling again without trouble.
    for n in range(200, 260):
        turn(new_saver(client), n)
    assert new_saver(client).get_tuple(thread()) is not None


def test_a_stale_writer_cannot_clobber_a_base_in_use() -> None:
    client = FakeS3Client()
    spill_ready(client)
    stale, fresh = new_saver(client), new_saver(client)
    run = Stepper(stale, put_plan(stale, 1)).run_until(is_put_to("/base/"))
    turn(fresh, 500)  # spills into the slot the stale writer is about to write
    run.run_until()
    assert isinstance(run.result, CheckpointConflict)
    latest = new_saver(client).get_tuple(thread())
    assert latest is not None and latest.metadata["step"] == 500


def test_a_slot_left_by_a_loser_is_adopted_then_reused() -> None:
    client = FakeS3Client()
    spill_ready(client)
    loser, winner = new_saver(client), new_saver(client)
    run = Stepper(loser, put_plan(loser, 1)).run_until(is_put_to("/base/"))
    run.send_one()  # the loser writes the slot...
    turn(winner, 7)  # ...and loses the head to another writer
    run.run_until()
    assert isinstance(run.result, CheckpointConflict)
    for n in range(300, 340):  # later spills into that slot succeed
        turn(new_saver(client), n)
    latest = new_saver(client).get_tuple(thread())
    assert latest is not None and latest.metadata["step"] == 339


def test_threads_of_format_1_are_read_then_upgraded_in_place() -> None:
    client = FakeS3Client()
    saver = new_saver(client)
    serde = saver.serde
    namespace = saver.keys.namespace("t1", "")
    old = empty_checkpoint()
    messages = [HumanMessage("from before", id="o1"), AIMessage("the old reply", id="o2")]
    old["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    rest = {k: v for k, v in old.items() if k != "channel_values"}
    for key, fields in [
        (f"c/{old['id']}", {"v": 1, "parent": None, "checkpoint": list(serde.dumps_typed(rest)),
                            "values": {"messages": list(serde.dumps_typed(messages))},
                            "metadata": list(serde.dumps_typed({"step": 3}))}),
        (f"w/{old['id']}", {"v": 1, "writes": [["task", 0, "ch", list(serde.dumps_typed("w")),
                                                ""]]}),
        ("head", {"v": 1, "id": old["id"], "w": True}),
    ]:
        client.put_object(Bucket="bucket", Key=namespace + key, Body=ormsgpack.packb(fields))

    found = saver.get_tuple(thread())
    assert found is not None and found.metadata == {"step": 3}
    assert found.checkpoint["channel_values"]["messages"] == messages
    assert found.pending_writes == [("task", "ch", "w")]

    turn(new_saver(client), 1)  # the next turn writes a format-2 head, conditionally
    assert client.objects[saver.keys.head("t1", "")][0].startswith(MAGIC)
    latest = new_saver(client).get_tuple(thread())
    assert latest is not None
    assert [m.id for m in latest.checkpoint["channel_values"]["messages"]][:2] == ["o1", "o2"]
    new_saver(client).delete_thread("t1")
    assert not client.objects
