"""/chat/history shows the conversation's current branch only."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from api.routes.chat import on_current_branch
from shared.checkpoint import TranscriptEntry


def entries(*ids: str) -> list[TranscriptEntry]:
    return [TranscriptEntry(HumanMessage(content=i, id=i) if i.startswith("h")
                            else AIMessage(content=i, id=i), "2026-01-01T00:00:00+00:00")
            for i in ids]


def ids_of(page: list[TranscriptEntry]) -> list[str]:
    return [e.value.id for e in page]


def test_a_whole_conversation_drops_the_branch_left_behind() -> None:
    page = entries("h1", "a1", "h2", "a2", "h2b", "a2b")
    assert ids_of(on_current_branch(page, ["h1", "a1", "h2b", "a2b"], 64)) == [
        "h1", "a1", "h2b", "a2b"]


def test_a_regenerated_reply_replaces_the_old_one() -> None:
    page = entries("h1", "a1", "a1b")
    assert ids_of(on_current_branch(page, ["h1", "a1b"], 64)) == ["h1", "a1b"]


def test_a_trimmed_window_keeps_the_older_history() -> None:
    page = entries("h0", "a0", "h1", "a1", "h2", "a2", "h2b", "a2b")
    window = ["h1", "a1", "h2b", "a2b"]
    assert ids_of(on_current_branch(page, window, 4)) == [
        "h0", "a0", "h1", "a1", "h2b", "a2b"]
    # A page past the window's first message, and one before it.
    assert ids_of(on_current_branch(page[3:], window, 4)) == ["a1", "h2b", "a2b"]
    assert ids_of(on_current_branch(page[:2], window, 4)) == ["h0", "a0"]


def test_without_a_branch_every_message_shows() -> None:
    page = entries("h1", "a1", "h2", "a2")
    assert ids_of(on_current_branch(page, ["h1", "a1", "h2", "a2"], 64)) == ids_of(page)
    assert ids_of(on_current_branch(page, [], 64)) == ids_of(page)
