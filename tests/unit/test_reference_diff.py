"""The diff behind the reference test (tests/reference.py): what it reports, what it lets pass."""

from __future__ import annotations

from typing import Any

from tests.reference import Answer, compare, diff

SSE = {"content-type": "text/event-stream"}
OUR_ID, THEIR_ID = "6f1c9a52-0b1e-4c8e-9a57-2d1f0f6c3a10", "01a24b72-c3d8-7243-bc8d-61e3c2f16d65"


def stream(*events: tuple[str, Any]) -> Answer:
    return Answer(200, [{"event": name, "data": data} for name, data in events], SSE)


def test_ids_and_times_compare_by_type_only() -> None:
    ours = {"run_id": OUR_ID, "created_at": 1.5,
            "ts": "2026-12-06T13:01:53.866753+00:00", "status": "success", "count": 1}
    theirs = {"run_id": THEIR_ID, "created_at": 9.25,
              "ts": "2026-01-01T00:00:00Z", "status": "success", "count": 1}
    assert list(diff(ours, theirs)) == []


def test_keys_values_and_types_are_reported() -> None:
    found = dict(diff({"a": 1, "b": "x", "only": 1, "c": [1]},
                      {"a": 2, "b": None, "c": [1, 2], "theirs": {}}))

    assert found == {
        "$.a": "ours 1, reference 2",
        "$.b": 'ours string "x", reference null null',
        "$.c": "ours 1 items, reference 2",
        "$.only": "only ours",
        "$.theirs": "only the reference",
    }


def test_keys_that_are_ids_match_each_other() -> None:
    ours = {"messages/metadata": {f"lc_run--{OUR_ID}": {"x": 1}}}
    theirs = {"messages/metadata": {f"lc_run--{THEIR_ID}": {"x": 1}}}
    assert list(diff(ours, theirs)) == []


def test_streams_differ_by_event_names_then_by_data() -> None:
    ours = stream(("metadata", {"run_id": OUR_ID}), ("values", {"n": 1}), ("extra", {}),
                  ("end", {"k": 1}))
    theirs = stream(("metadata", {"run_id": THEIR_ID}), ("values", {"n": 2}), ("end", {}))

    assert list(compare(ours, theirs)) == [
        ("$.events[1]:values.n", "ours 1, reference 2"),
        ("$.events[2:3]", "ours ['extra'], reference's [2:2] []"),
        ("$.events[3]:end.k", "only ours"),
    ]


def test_error_answers_compare_by_status_only() -> None:
    assert list(compare(Answer(404, {"detail": "ours"}), Answer(404, {"detail": "theirs"}))) == []
    assert list(compare(Answer(409, {}), Answer(404, {}))) == [
        ("$.status", "ours 409, reference 404")]
