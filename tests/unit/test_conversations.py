"""The list of conversations' pure parts: titles and cursors."""

from __future__ import annotations

import pytest

from shared.conversation import TITLE_CHARS, title_of
from shared.store.conversations import BadCursor, cursor_of, parse_cursor


def test_a_short_message_is_its_own_title_on_one_line() -> None:
    assert title_of("  Hello\n  there\t!") == "Hello there !"


def test_a_long_message_is_cut_with_an_ellipsis() -> None:
    title = title_of("word " * 100)
    assert len(title) == TITLE_CHARS and title.endswith("…")


def test_a_cursor_names_its_time_and_thread() -> None:
    assert parse_cursor(cursor_of("1764650000.1234560013", "t-1")) == ("1764650000.123456", "t-1")


@pytest.mark.parametrize("cursor", ["", "1764650000", ":t1", "nan:t1", "1e9:t1", "-1:t1",
                                    "1.5:bad id", "١٢:t1", "1:" + "x" * 129])
def test_anything_else_is_a_bad_cursor(cursor: str) -> None:
    with pytest.raises(BadCursor):
        parse_cursor(cursor)
