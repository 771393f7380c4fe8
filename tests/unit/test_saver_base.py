"""The S3 saver's storage layout and (de)serialisation, without any server."""

from __future__ import annotations

import pickle
import uuid
from datetime import date
from typing import Any

import ormsgpack
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

from shared.checkpoint import AsyncS3Saver, S3SaverError
from shared.checkpoint.base import (
    BaseS3Saver,
    KeyLayout,
    ParsedKey,
    WriteRecord,
    decode_ns,
    dump_head,
    dump_write_records,
    encode_ns,
    load_head,
    load_write_records,
    merge_writes,
    normalise_prefix,
    parse_conn_string,
    validate_id,
)

GOOD_IDS = ["t1", "thread-0", str(uuid.uuid4()), "a:b.c_d-e", "x" * 256, "..a"]
BAD_IDS: list[Any] = ["", ".", "..", "../x", "a/b", "a b", "x" * 257, "t\n1", "é", None, 7]


@pytest.fixture
def saver() -> BaseS3Saver:
    return BaseS3Saver(prefix="chat_histories")


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


def test_root_namespace_segment() -> None:
    assert encode_ns("") == "ns."


@pytest.mark.parametrize("ns", ["x" * 513, "\ud800", None])
def test_unusable_namespaces_are_rejected(ns: Any) -> None:
    with pytest.raises(ValueError, match="checkpoint_ns"):
        encode_ns(ns)


@pytest.mark.parametrize("segment", ["", "x", "ns", "ns.a", "ns.YQ=", "ns.+/", "ns.YR", "c"])
def test_foreign_segments_do_not_decode(segment: str) -> None:
    assert decode_ns(segment) is None


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("/", ""), ("chat_histories", "chat_histories/"),
     ("chat_histories/", "chat_histories/"), ("/a/b//", "a/b/")],
)
def test_prefix_is_normalised(prefix: str, expected: str) -> None:
    assert normalise_prefix(prefix) == expected


@pytest.mark.parametrize(
    ("conn", "expected"),
    [("s3://bucket", ("bucket", "")), ("s3://bucket/", ("bucket", "")),
     ("s3://my.bucket-1/chat_histories", ("my.bucket-1", "chat_histories/")),
     ("s3://bucket/a/b//", ("bucket", "a/b/"))],
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
    assert keys.thread("t1") == "p/t1/"
    assert keys.head("t1", "") == "p/t1/ns./head"
    assert keys.checkpoint("t1", "child:1", "cp-1") == "p/t1/ns.Y2hpbGQ6MQ/c/cp-1"
    assert keys.writes("t1", "", "cp-1") == "p/t1/ns./w/cp-1"
    assert not keys.head("t10", "").startswith(keys.thread("t1"))


def test_key_builders_reject_unsafe_ids() -> None:
    keys = KeyLayout("")
    with pytest.raises(ValueError):
        keys.head("../etc", "")
    with pytest.raises(ValueError):
        keys.checkpoint("t1", "", "../../x")


@pytest.mark.parametrize("prefix", ["", "p/", "a/b/"])
def test_keys_parse_back(prefix: str) -> None:
    keys = KeyLayout(prefix)
    ns = "parent:abc|child:def"
    assert keys.parse(keys.head("t1", ns)) == ParsedKey("t1", ns, "head", None)
    assert keys.parse(keys.checkpoint("t1", ns, "c1")) == ParsedKey("t1", ns, "checkpoint", "c1")
    assert keys.parse(keys.writes("t1", "", "c1")) == ParsedKey("t1", "", "writes", "c1")


@pytest.mark.parametrize(
    "key",
    ["other/t1/ns./head", "p/t1/ns./head/x", "p/t1/bad/head", "p/../ns./head", "p/t1/ns./c/..",
     "p/t1/ns./x/c1", "p/t1/ns./c", "p/t1", "p/t1/ns./c/a/b"],
)
def test_foreign_keys_do_not_parse(key: str) -> None:
    assert KeyLayout("p/").parse(key) is None


def record(
    task: str, idx: int, value: bytes = b"v", channel: str = "ch", path: str = ""
) -> WriteRecord:
    return WriteRecord(task, idx, channel, ("msgpack", value), path)


def test_regular_writes_keep_the_first_value() -> None:
    first = [record("t", 0, b"first")]
    assert merge_writes(first, [record("t", 0, b"second")]) is None
    assert merge_writes(first, [record("t", 1, b"x")]) == [*first, record("t", 1, b"x")]
    assert merge_writes([], first) == first


def test_special_writes_replace_earlier_ones() -> None:
    earlier = [record("t", -1, b"old", ERROR)]
    assert merge_writes(earlier, [record("t", -1, b"new", ERROR)]) == [
        record("t", -1, b"new", ERROR)
    ]
    assert merge_writes(earlier, earlier) is None


def test_writes_get_langgraph_indexes(saver: BaseS3Saver) -> None:
    records = saver._dump_writes([("a", 1), (ERROR, "boom"), (INTERRUPT, {"x": 1})], "t", "p")
    assert [(r.channel, r.idx, r.task_path) for r in records] == [
        ("a", 0, "p"), (ERROR, -1, "p"), (INTERRUPT, -3, "p")
    ]


def test_pending_writes_load_sorted_by_path_task_and_index(saver: BaseS3Saver) -> None:
    records = [
        *saver._dump_writes([("x", "b0"), ("y", "b1")], "task-b", "~path-2"),
        *saver._dump_writes([("x", "a1")], "task-a", "path-1"),
        *saver._dump_writes([("z", "c0")], "task-c", ""),
    ]
    assert saver._load_writes(list(reversed(records))) == [
        ("task-c", "z", "c0"), ("task-a", "x", "a1"), ("task-b", "x", "b0"), ("task-b", "y", "b1"),
    ]


def test_write_records_round_trip() -> None:
    records = [record("t", 0, b"\x00\xff", path="a:b"), record("u", -3, b"", INTERRUPT)]
    assert load_write_records(dump_write_records(records)) == records


def checkpoint_with_messages() -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {
        "messages": [HumanMessage("hi", id="1"), AIMessage("hello", id="2")],
        "blob": b"\x00raw",
        "day": date(2024, 1, 2),
        "nothing": None,
    }
    checkpoint["channel_versions"] = {"messages": "00000000000000000000000000000001.1"}
    return checkpoint


def test_checkpoints_round_trip(saver: BaseS3Saver) -> None:
    checkpoint = checkpoint_with_messages()
    metadata: Any = {"source": "loop", "step": 3, "parents": {}, "score": 4.5}

    stored = saver._load_checkpoint(saver._dump_checkpoint(checkpoint, metadata, "parent-1"))

    assert stored is not None
    assert stored.checkpoint == checkpoint
    assert stored.metadata == metadata
    assert stored.parent_id == "parent-1"


def test_checkpoint_objects_are_compact_msgpack(saver: BaseS3Saver) -> None:
    body = saver._dump_checkpoint(checkpoint_with_messages(), {"step": 1}, None)
    fields = ormsgpack.unpackb(body)
    assert fields["v"] == 1 and fields["parent"] is None
    assert fields["values"]["blob"] == ["bytes", b"\x00raw"]  # raw binary, not base64


def test_metadata_filter(saver: BaseS3Saver) -> None:
    body = saver._dump_checkpoint(empty_checkpoint(), {"source": "input", "step": -1}, None)
    assert saver._load_checkpoint(body, {"source": "input", "step": -1}) is not None
    assert saver._load_checkpoint(body, {"source": "loop"}) is None
    assert saver._load_checkpoint(body, {"missing": None}) is not None


@pytest.mark.parametrize("body", [b"", b"not msgpack \xc1", ormsgpack.packb([1, 2])])
def test_corrupt_objects_raise_saver_errors(saver: BaseS3Saver, body: bytes) -> None:
    with pytest.raises(S3SaverError):
        saver._load_checkpoint(body)


def test_unknown_format_versions_are_refused(saver: BaseS3Saver) -> None:
    with pytest.raises(S3SaverError, match="format version 2"):
        saver._load_checkpoint(ormsgpack.packb({"v": 2}))
    with pytest.raises(S3SaverError, match="head"):
        load_head(ormsgpack.packb({"id": "x"}))


def test_nothing_is_ever_unpickled(saver: BaseS3Saver) -> None:
    pickled = WriteRecord("t", 0, "ch", ("pickle", pickle.dumps(date.today())), "")
    with pytest.raises(S3SaverError, match="pickle"):
        saver._load_writes([pickled])
    with pytest.raises(TypeError):
        saver.serde.dumps_typed(object())


def test_head_round_trip() -> None:
    assert load_head(dump_head("cp-1", True)) == ("cp-1", True)
    assert load_head(dump_head("cp-2", False)) == ("cp-2", False)


def test_versions_increase_in_string_order(saver: BaseS3Saver) -> None:
    versions: list[str] = []
    current: str | int | None = None
    for _ in range(200):
        current = saver.get_next_version(current, None)
        versions.append(current)
    assert versions == sorted(versions) and len(set(versions)) == 200
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")
    assert saver.get_next_version(None, None).startswith(f"{1:032}.")


def test_sync_api_points_to_the_async_one() -> None:
    saver = AsyncS3Saver(client=None, bucket="bucket")
    with pytest.raises(NotImplementedError, match="aget_tuple"):
        saver.get_tuple({"configurable": {"thread_id": "t"}})
    with pytest.raises(NotImplementedError, match="adelete_thread"):
        saver.delete_thread("t")
