"""Token batching toward the job's event stream (no servers)."""

from __future__ import annotations

import asyncio

from worker.streaming import BATCH_SECONDS, TokenBatcher


def recording_batcher() -> tuple[TokenBatcher, list[str]]:
    """A batcher whose sends land in a list."""
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    return TokenBatcher(send), sent


async def test_the_first_token_goes_out_at_once_then_tokens_share_batches() -> None:
    batcher, sent = recording_batcher()
    await batcher.add("Hello")
    assert sent == ["Hello"]

    for word in [" a", " b", " c"]:
        await batcher.add(word)
    assert sent == ["Hello"]  # inside the window: held back
    await asyncio.sleep(BATCH_SECONDS * 3)
    assert sent == ["Hello", " a b c"]  # flushed by the timer, without a next token

    await batcher.add(" d")
    await batcher.close()
    assert "".join(sent) == "Hello a b c d"


async def test_close_sends_what_is_left_and_empty_tokens_send_nothing() -> None:
    batcher, sent = recording_batcher()
    await batcher.add("")
    assert sent == []
    await batcher.add("x")
    await batcher.add("y")
    await batcher.close()
    await asyncio.sleep(BATCH_SECONDS * 2)
    assert sent == ["x", "y"]


async def test_a_slow_send_keeps_the_batches_in_order() -> None:
    # The timer's batch is still being sent when the next token finds the
    # window over: the later batch must wait for it, not overtake it.
    sent: list[str] = []
    first_send = asyncio.Event()

    async def send(text: str) -> None:
        if text == " b":
            first_send.set()
            await asyncio.sleep(BATCH_SECONDS * 3)
        sent.append(text)

    batcher = TokenBatcher(send)
    await batcher.add("a")
    await batcher.add(" b")  # held, then sent by the timer, slowly
    async with asyncio.timeout(5):
        await first_send.wait()
    await asyncio.sleep(BATCH_SECONDS * 1.5)
    await batcher.add(" c")
    await batcher.close()

    assert sent == ["a", " b", " c"]
