"""Last-Event-ID: what the parser takes is what the schema's pattern says."""

from __future__ import annotations

import random
import re

import pytest

from api.sse import LAST_EVENT_ID_SCHEMA, MAX_ID_PART, BadEventId, parse_last_event_id

SCHEMA_PATTERN = re.compile(str(LAST_EVENT_ID_SCHEMA["pattern"]))
TOP = 2**64 - 1


def schema_allows(raw: str) -> bool:
    return SCHEMA_PATTERN.search(raw) is not None and len(raw) <= 41


def test_the_limit_is_redis_stream_ids() -> None:
    assert MAX_ID_PART == TOP == 18446744073709551615


@pytest.mark.parametrize("raw", [
    "0-0", "1700000000000-0", "1700000000000-17", f"{TOP}-{TOP}", f"{TOP - 1}-0",
    f"0-{10**19}", "0" * 20 + "-1", f"{10**19 - 1}-5",
])
def test_ids_within_range_are_taken_as_they_are(raw: str) -> None:
    assert parse_last_event_id(raw) == raw
    assert schema_allows(raw)


@pytest.mark.parametrize("raw", [None, ""])
def test_no_id_means_the_start(raw: str | None) -> None:
    assert parse_last_event_id(raw) == "0-0"
    assert schema_allows("")


@pytest.mark.parametrize("raw", [
    f"{TOP + 1}-0", f"0-{TOP + 1}", f"{TOP + 1}-{TOP + 1}", "99999999999999999999-0",
    "18446744073709551620-0", "1" * 21 + "-0", "abc", "1-2-3", "-1", "1-", "-", "1", " 1-0",
    "1-0 ", "\u0661-0",  # an Arabic-Indic one
])
def test_malformed_or_out_of_range_ids_are_400(raw: str) -> None:
    with pytest.raises(BadEventId) as refused:
        parse_last_event_id(raw)
    assert refused.value.status_code == 400
    assert not schema_allows(raw)


def test_pattern_and_parser_agree_with_arithmetic_near_the_limit() -> None:
    rng = random.Random(64)
    for _ in range(5_000):
        number = TOP + rng.randint(-10**rng.randint(0, 19), 10**rng.randint(0, 19))
        raw = f"{rng.randint(0, 9)}-{number}"
        within = number <= TOP
        assert schema_allows(raw) == within, raw
        try:
            parse_last_event_id(raw)
        except BadEventId:
            assert not within, raw
        else:
            assert within, raw
