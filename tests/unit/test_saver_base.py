"""The S3 saver's layout, object format and value storage, without any server."""

from __future__ import annotations

import base64
import os
import pickle
import uuid
import zlib
from datetime import date
from typing import Any

import ormsgpack
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, _DeltaSnapshot

from shared.checkpoint import S3SaverError, _codec, decode_key
from shared.checkpoint._codec import FORMAT_VERSION, MAGIC, pack, unpack
from shared.checkpoint._layout import (
    KeyLayout,
    ParsedKey,
    decode_ns,
    encode_ns,
    normalise_prefix,
    parse_conn_string,
    validate_id,
)
from shared.checkpoint._state import (
    Blob,
    Entry,
    Record,
    State,
    Transcript,
    WriteRecord,
    collect,
    digest,
    from_fields,
    retain,
    to_fields,
    union,
)
from shared.checkpoint.base import BaseS3Saver, merge_writes
from shared.checkpoint.serde import ObjectCipher

GOOD_IDS = ["t1", "thread-0", str(uuid.uuid4()), "a:b.c_d-e", "x" * 256, "..a"]
BAD_IDS: list[Any] = ["", ".", "..", "../x", "a/b", "a b", "x" * 257, "t\n1", "é", None, 7]
KEY = bytes(range(32))
PLACE = b"t1\0\0head"


@pytest.fixture
def saver() -> BaseS3Saver:
    return BaseS3Saver(prefix="chat_histories")


# --- layout -----------------------------------------------------------------


@pytest.mark.parametrize("value", GOOD_IDS)
def test_safe_ids_pass_unchanged(value: str) -> None:
    assert validate_id(value, "thread_id") == value


@pytest.mark.parametrize("value", BAD_IDS)
def test_unsafe_ids_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="thread_id"):
        validate_id(value, "thread_id")


@pytest.mark.parametrize(
    "ns", ["", "child:1", "parent:abc|child:def", "a/b/../c", "ünï cödé", "=" * 7]
)
def test_namespaces_round_trip_through_safe_segments(ns: str) -> None:
    segment = encode_ns(ns)
    assert segment.startswith("ns.")
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in segment[3:])
    assert decode_ns(segment) == ns


@pytest.mark.parametrize("ns", ["x" * 513, "\ud800", None])
def test_unusable_namespaces_are_rejected(ns: Any) -> None:
    with pytest.raises(ValueError, match="checkpoint_ns"):
        encode_ns(ns)


@pytest.mark.parametrize("segment", ["", "x", "ns", "ns.a", "ns.YQ=", "ns.+/", "ns.YR", "c"])
def test_foreign_segments_do_not_decode(segment: str) -> None:
    assert decode_ns(segment) is None


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("/", ""), ("chat_histories", "chat_histories/"), ("/a/b//", "a/b/")],
)
def test_prefix_is_normalised(prefix: str, expected: str) -> None:
    assert normalise_prefix(prefix) == expected


@pytest.mark.parametrize(
    ("conn", "expected"),
    [("s3://bucket", ("bucket", "")), ("s3://my.bucket-1/chat_histories",
                                       ("my.bucket-1", "chat_histories/"))],
)
def test_conn_string_is_parsed(conn: str, expected: tuple[str, str]) -> None:
    assert parse_conn_string(conn) == expected


@pytest.mark.parametrize(
    "conn", ["bucket/prefix", "http://bucket/p", "s3:///p", "s3://a/p", "s3://b?x=1", "s3://b/p#f"]
)
def test_bad_conn_strings_are_rejected(conn: str) -> None:
    with pytest.raises(ValueError):
        parse_conn_string(conn)


def test_keys_live_under_the_thread_prefix() -> None:
    keys = KeyLayout("p/")
    assert keys.head("t1", "") == "p/t1/ns./head"
    gen = "0123456789abcdef"
    assert keys.segment("t1", "child:1", gen, 7) == f"p/t1/ns.Y2hpbGQ6MQ/seg/{gen}/00000007"
    assert not keys.head("t10", "").startswith(keys.thread("t1"))
    with pytest.raises(ValueError):
        keys.segment("t1", "", "../x", 0)
    with pytest.raises(ValueError):
        keys.head("../etc", "")


@pytest.mark.parametrize("prefix", ["", "p/", "a/b/"])
def test_keys_parse_back(prefix: str) -> None:
    keys = KeyLayout(prefix)
    ns = "parent:abc|child:def"
    assert keys.parse(keys.head("t1", ns)) == ParsedKey("t1", ns, "head")
    segment = keys.segment("t1", "", "0123456789abcdef", 0)
    assert keys.parse(segment) == ParsedKey("t1", "", "segment")


@pytest.mark.parametrize(
    "key",
    ["other/t1/ns./head", "p/t1/ns./head/x", "p/t1/bad/head", "p/../ns./head", "p/t1/ns./base/0",
     "p/t1/ns./c/c1", "p/t1/ns./seg", "p/t1", "p/t1/ns./seg/0/x/y"],
)
def test_foreign_keys_do_not_parse(key: str) -> None:
    assert KeyLayout("p/").parse(key) is None


# --- object format ------------------------------------------------------------


def test_objects_carry_magic_and_version_and_deflate_when_large() -> None:
    small = pack({"a": b"\x00\xff"}, cipher=None, place=PLACE)
    assert small.startswith(MAGIC + bytes((FORMAT_VERSION, 0)))
    assert ormsgpack.unpackb(small[6:]) == {"a": b"\x00\xff"}  # raw binary, not base64
    large = pack({"a": "x" * 5000}, cipher=None, place=PLACE)
    assert large[5] == 1 and len(large) < 200
    assert unpack(large, "test", cipher=None, place=PLACE) == {"a": "x" * 5000}


@pytest.mark.parametrize(
    "body", [b"", b"LGS3", b"not ours", MAGIC + bytes((FORMAT_VERSION, 0)) + b"\xc1",
             MAGIC + bytes((FORMAT_VERSION, 1)) + b"not zlib"],
)
def test_corrupt_objects_raise_saver_errors(body: bytes) -> None:
    with pytest.raises(S3SaverError, match="corrupt"):
        unpack(body, "head", cipher=None, place=PLACE)


def test_other_format_versions_are_refused_before_decoding() -> None:
    with pytest.raises(S3SaverError, match="format version 1"):
        unpack(MAGIC + bytes((1, 1)) + b"junk", "head", cipher=None, place=PLACE)


def test_sealed_objects_open_only_with_their_key_and_place() -> None:
    cipher = ObjectCipher(KEY)
    sealed = pack({"secret": "hunter2" * 300}, cipher=cipher, place=PLACE)
    assert b"hunter2" not in sealed and sealed[5] == 3  # deflated, then sealed
    assert unpack(sealed, "head", cipher=cipher, place=PLACE) == {"secret": "hunter2" * 300}
    for key, place, match in [
        (KEY, b"t2\0\0head", "decrypt"),  # another thread's key
        (KEY, b"t1\0\0segment/0", "decrypt"),  # another role
        (os.urandom(32), PLACE, "decrypt"),  # another key
    ]:
        with pytest.raises(S3SaverError, match=match):
            unpack(sealed, "head", cipher=ObjectCipher(key), place=place)
    with pytest.raises(S3SaverError, match="no key"):
        unpack(sealed, "head", cipher=None, place=PLACE)
    tampered = sealed[:6] + bytes([sealed[6] ^ 1]) + sealed[7:]
    with pytest.raises(S3SaverError, match="decrypt"):
        unpack(tampered, "head", cipher=cipher, place=PLACE)


def test_inflating_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "_MAX_INFLATED", 2**20)
    bomb = MAGIC + bytes((FORMAT_VERSION, 1)) + zlib.compress(b"\x00" * 2**21, 9)
    with pytest.raises(S3SaverError, match="inflates past"):
        unpack(bomb, "head", cipher=None, place=PLACE)


# --- the state model ------------------------------------------------------------


def record(rid: str, parent: str | None = None, versions: dict[str, Any] | None = None,
           replay: tuple[str, ...] = (), run_id: str | None = None) -> Record:
    return Record(rid, parent, ("msgpack", b"c"), ("msgpack", b"m"), versions or {}, run_id,
                  replay)


def item(n: int) -> tuple[str, bytes]:
    return ("msgpack", ormsgpack.packb(n))


def test_collect_drops_what_nothing_retained_uses() -> None:
    kept, gone, tail = item(1), item(2), item(3)
    state = State(
        records={"c2": record("c2", "c1", {"m": 2, "x": 1})},
        blobs={("m", 1): Blob("l", refs=(digest(gone),)),
               ("m", 2): Blob("l", refs=(digest(kept),)),
               ("x", 1): Blob("v", ("msgpack", b"x"))},
        items={digest(t): t for t in (kept, gone, tail)},
        writes={"c2": (), "c0": (), "c9": ()},
        transcript=Transcript("0" * 16, 10, tail=(Entry(digest(tail), "ts"),)),
    )
    small = collect(state)
    assert set(small.blobs) == {("m", 2), ("x", 1)}
    assert set(small.items) == {digest(kept), digest(tail)}
    assert set(small.writes) == {"c2", "c9"}  # c9: written before its checkpoint


def test_retain_keeps_the_newest_and_the_ancestors_their_delta_channels_need() -> None:
    blobs = {("msgs", "v1"): Blob("v", ("msgpack", b"snap"))}
    state = State(
        records={
            "c1": record("c1", None, {"msgs": "v1"}),
            "c2": record("c2", "c1", {"msgs": "v2"}, replay=("msgs",)),
            "c3": record("c3", "c2", {"msgs": "v3"}, replay=("msgs",)),
            "c4": record("c4", "c3", {"msgs": "v4"}, replay=("msgs",)),
        },
        blobs=blobs,
        writes={c: () for c in ("c1", "c2", "c3", "c4")},
    )
    kept = retain(state, 2)
    assert set(kept.records) == {"c1", "c2", "c3", "c4"}  # back to the snapshot at c1
    plain = State({k: r._replace(replay=()) for k, r in state.records.items()}, blobs)
    assert set(retain(plain, 2).records) == {"c3", "c4"}
    assert retain(plain, 9) is plain


def test_union_adds_the_other_checkpoints() -> None:
    into = State({"a": record("a", None, {"m": 1})}, {("m", 1): Blob("l", refs=(b"x",))},
                 {b"x": item(0)})
    other = State({"b": record("b", None, {"m": 2})}, {("m", 2): Blob("l", refs=(b"y",))},
                  {b"y": item(9)})
    both = union(into, other)
    assert set(both.records) == {"a", "b"} and both.items == {b"x": item(0), b"y": item(9)}


def test_heads_round_trip() -> None:
    state = State(
        {"c1": record("c1", None, {"a": 1, "b": "2.5"}, ("b",), "run")},
        {("a", 1): Blob("v", ("bytes", b"\x00")), ("b", "2.5"): Blob("s", refs=(digest(item(3)),))},
        {digest(item(3)): item(3)},
        {"c1": (WriteRecord("t", -1, ERROR, ("msgpack", b"e"), "p"),)},
        Transcript("0123456789abcdef", 5, 2, (Entry(digest(item(3)), "2024-01-01"),)),
    )
    fields = ormsgpack.unpackb(ormsgpack.packb(to_fields(state, b"tok")))
    assert from_fields(fields) == (state, b"tok")


# --- values, checkpoints and writes through the serde ---------------------------------


def checkpoint_with(values: dict[str, Any], version: int = 1) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, version)
    return checkpoint


def store(saver: BaseS3Saver, state: State, checkpoint: Checkpoint,
          parent: str | None = None) -> Record:
    rec = saver._dump_record({}, checkpoint, {"step": 1}, parent)
    saver._store_values(state, rec, checkpoint["channel_values"], checkpoint["ts"])
    state.records[rec.id] = rec
    return rec


def test_checkpoints_round_trip(saver: BaseS3Saver) -> None:
    checkpoint = checkpoint_with({
        "messages": [HumanMessage("hi", id="1"), AIMessage("hello", id="2")],
        "blob": b"\x00raw", "day": date(2024, 1, 2), "nothing": None, "list": [1, 2, 3],
    })
    state = State()
    rec = store(saver, state, checkpoint)
    loaded = saver._load_tuple("t", "", state, rec)
    assert loaded.checkpoint == checkpoint
    assert loaded.metadata == {"step": 1}
    assert loaded.parent_config is None


def test_a_list_stores_only_its_new_elements(saver: BaseS3Saver) -> None:
    state = State()
    history = [HumanMessage(f"m{i}", id=str(i)) for i in range(50)]
    first = store(saver, state, checkpoint_with({"messages": history}))
    longer = [*history, AIMessage("answer", id="a")]
    second = store(saver, state, checkpoint_with({"messages": longer}, 2), first.id)
    assert len(state.items) == 51
    assert state.blobs[("messages", 2)].refs[:50] == state.blobs[("messages", 1)].refs
    assert saver._load_tuple("t", "", state, second).checkpoint["channel_values"] == {
        "messages": longer}


def test_edited_lists_reuse_what_they_still_share(saver: BaseS3Saver) -> None:
    state = State()
    history = [HumanMessage(f"m{i}", id=str(i)) for i in range(10)]
    first = store(saver, state, checkpoint_with({"messages": history}))
    edited = [*history[:3], HumanMessage("changed", id="3"), *history[5:]]
    second = store(saver, state, checkpoint_with({"messages": edited}, 2), first.id)
    assert len(state.items) == 11
    assert saver._load_tuple("t", "", state, second).checkpoint["channel_values"][
        "messages"] == edited


def test_delta_channel_snapshots_of_lists_share_elements(saver: BaseS3Saver) -> None:
    state = State()
    first = store(saver, state, checkpoint_with({"m": [1, 2, 3]}))
    snapshot = _DeltaSnapshot([1, 2, 3, 4])
    second = store(saver, state, checkpoint_with({"m": snapshot}, 2), first.id)
    assert len(state.items) == 4 and state.blobs[("m", 2)].kind == "s"
    assert saver._load_tuple("t", "", state, second).checkpoint["channel_values"] == {
        "m": snapshot}


def test_unchanged_channels_are_not_stored_again(saver: BaseS3Saver) -> None:
    state = State()
    first = store(saver, state, checkpoint_with({"a": "x" * 100, "b": 1}))
    blobs = dict(state.blobs)
    checkpoint = checkpoint_with({"a": "x" * 100, "b": 2})
    checkpoint["channel_versions"] = {"a": 1, "b": 2}
    store(saver, state, checkpoint, first.id)
    assert set(state.blobs) - set(blobs) == {("b", 2)}


def test_regular_writes_keep_the_first_value_special_ones_are_replaced() -> None:
    first = [WriteRecord("t", 0, "ch", ("msgpack", b"first"), "")]
    assert merge_writes(first, [WriteRecord("t", 0, "ch", ("msgpack", b"2nd"), "")]) is None
    error = [WriteRecord("t", -1, ERROR, ("msgpack", b"old"), "")]
    new = [WriteRecord("t", -1, ERROR, ("msgpack", b"new"), "")]
    assert merge_writes(error, new) == new
    assert merge_writes(new, new) is None


def test_writes_get_langgraph_indexes_and_load_sorted(saver: BaseS3Saver) -> None:
    records = saver._dump_writes([("a", 1), (ERROR, "boom"), (INTERRUPT, {"x": 1})], "t", "p")
    assert [(r.channel, r.idx) for r in records] == [("a", 0), (ERROR, -1), (INTERRUPT, -3)]
    mixed = [
        *saver._dump_writes([("x", "b0"), ("y", "b1")], "task-b", "~path-2"),
        *saver._dump_writes([("x", "a1")], "task-a", "path-1"),
        *saver._dump_writes([("z", "c0")], "task-c", ""),
    ]
    assert saver._load_writes(list(reversed(mixed))) == [
        ("task-c", "z", "c0"), ("task-a", "x", "a1"), ("task-b", "x", "b0"),
        ("task-b", "y", "b1"),
    ]


def test_nothing_is_ever_unpickled(saver: BaseS3Saver) -> None:
    pickled = WriteRecord("t", 0, "ch", ("pickle", pickle.dumps(date.today())), "")
    with pytest.raises(S3SaverError, match="pickle"):
        saver._load_writes([pickled])
    with pytest.raises(TypeError):
        saver.serde.dumps_typed(object())


def test_versions_increase_in_string_order(saver: BaseS3Saver) -> None:
    versions: list[str] = []
    current: str | int | None = None
    for _ in range(200):
        current = saver.get_next_version(current, None)
        versions.append(current)
    assert versions == sorted(versions) and len(set(versions)) == 200
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")


def test_keep_last_must_keep_something() -> None:
    with pytest.raises(ValueError, match="keep_last"):
        BaseS3Saver(keep_last=0)


# --- the transcript ------------------------------------------------------------------


def test_the_transcript_gets_each_message_once_in_order() -> None:
    saver = BaseS3Saver(transcript="messages")
    state = State()
    messages = [HumanMessage(f"m{i}", id=str(i)) for i in range(6)]
    first = store(saver, state, checkpoint_with({"messages": messages[:2]}))
    # A window: the oldest message leaves the list, two new ones come in.
    store(saver, state, checkpoint_with({"messages": messages[1:4]}, 2), first.id)
    assert state.transcript is not None
    assert [state.items[e.ref] for e in state.transcript.tail] == [
        saver.serde.dumps_typed(m) for m in messages[:4]]
    plain = BaseS3Saver()
    untouched = State()
    store(plain, untouched, checkpoint_with({"messages": messages}))
    assert untouched.transcript is None


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="CHECKPOINT_ENCRYPTION_KEY"):
        decode_key(key)


def test_the_async_saver_points_sync_callers_to_the_async_api() -> None:
    from shared.checkpoint import AsyncS3Saver

    saver = AsyncS3Saver(client=None, bucket="bucket")
    with pytest.raises(NotImplementedError, match="aget_tuple"):
        saver.get_tuple({"configurable": {"thread_id": "t"}})
    with pytest.raises(NotImplementedError, match="adelete_thread"):
        saver.delete_thread("t")
