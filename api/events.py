"""One reader per gateway process for the event streams of every waiting client.

A client waiting on POST /chat, or reading a job's events over SSE, does not
hold a Redis connection: it subscribes here, and one task reads the streams
of all subscribed jobs in a single blocking XREAD and hands each event to its
subscribers in memory. A thousand waiting clients cost one connection and
one command per round, not a thousand connections (redis-py's pool would
refuse them) and a thousand commands.

On a Redis Cluster a command may name keys of one hash slot only, and job
streams are in their threads' buckets (shared/store/keys.py): there is one
such reader per slot that has subscribed streams, each sent to the node
holding its slot. That costs a connection per slot read, held for its
block: redis-py's cluster pools do not wait, so the client given here needs
room on each node for as many reads as buckets there (keys.BUCKETS over the
masters, at most), beside its other commands.

A subscriber that joins while a read is blocked wakes it through a small
stream of this process's own (on a cluster, one in each slot read), so it
waits for no one else's block to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from api.errors import BUSY_RETRY_AFTER, TooManyRequests, Unavailable
from shared.job_events import Event, StreamReply, parse_events
from shared.redis_client import MAX_BLOCK_MS
from shared.store.keys import events_key, gateway_wake_key, slot_tags

log = structlog.get_logger("api.events")

# Entries taken from one stream per read: a long backlog comes in several rounds.
READ_COUNT = 500
RETRY_SECONDS = 0.5
# The longest a read waits after the last, to let events gather (5 µs a stream).
MAX_GATHER_SECONDS = 0.02
# The wake stream outlives a process that died without deleting it by this
# much; its expiry is pushed back at most once a RENEW (not at every wake).
WAKE_TTL_SECONDS = 3600
WAKE_RENEW_SECONDS = 600


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _earlier(a: str, b: str) -> str:
    return a if _position(a) <= _position(b) else b


class Subscription:
    """A job's events after a position, in order, each once."""

    def __init__(self, job_id: str, after: str) -> None:
        self.job_id = job_id
        self.after = after
        self._after = _position(after)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def follows(self, position: str) -> bool:
        """True if a read from `position` misses none of what this subscriber
        still wants (it has everything up to there)."""
        return self._after >= _position(position)

    def deliver(self, events: list[Event]) -> None:
        for event in events:
            position = _position(event.id)
            if position > self._after:
                self.after, self._after = event.id, position
                self._queue.put_nowait(event)

    async def next(self, within: float) -> Event | None:
        """The next event, or None if none came within `within` seconds."""
        try:
            async with asyncio.timeout(within):
                return await self._queue.get()
        except TimeoutError:
            return None


class _Reader:
    """The streams of one hash slot (on a single Redis, every stream), read by
    one task, one blocking XREAD at a time, with a wake stream among them."""

    def __init__(self, slot: int | None, wake_key: str) -> None:
        self.slot = slot
        self.wake_key = wake_key
        # By stream key: where the next read starts (its least advanced
        # subscriber's position; the others skip what they have).
        self.cursors = {wake_key: "0-0"}
        self.blocked = False
        self.waking: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self.cursors) - 1


class EventHub:
    """Subscriptions to job event streams, served by one reader task per hash
    slot read on a Redis Cluster, one in all on a single Redis."""

    def __init__(self, redis: Redis | RedisCluster, capacity: int,
                 per_client: int | None = None) -> None:
        self.redis = redis
        self.capacity = capacity
        # One client's share: no key (or address) can hold every place.
        self.per_client = per_client or capacity
        self._by_client: Counter[str] = Counter()
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        if isinstance(redis, RedisCluster):
            slot_tags()  # made now, not on the event loop in a client's request
        self._process = uuid.uuid4().hex
        self._readers: dict[int | None, _Reader] = {}
        # The slots whose last read failed.
        self._failing: set[int | None] = set()
        # Wake streams written, each with when its expiry is next pushed back.
        self._wake_renewals: dict[str, float] = {}
        self._running = False

    @property
    def healthy(self) -> bool:
        """False while a read of subscribed streams fails."""
        return not self._failing

    def admit(self, client: str) -> None:
        """Raises Unavailable (503) when the gateway holds as many waits and
        streams as it may, or TooManyRequests (429) when `client` holds as
        many as one key may: that is the client's doing, not the service's."""
        if self._count >= self.capacity:
            raise Unavailable("too many clients waiting on this gateway; retry later",
                              headers={"Retry-After": str(BUSY_RETRY_AFTER)})
        if self._by_client[client] >= self.per_client:
            raise TooManyRequests("you hold as many waits and streams as one key may on this "
                                  "gateway (MAX_WAITS_PER_KEY); close one, or retry later",
                              headers={"Retry-After": str(BUSY_RETRY_AFTER)})

    def start(self) -> None:
        """Reads from now on: each slot's reader runs while it has streams."""
        self._running = True
        for reader in self._readers.values():
            self._start(reader)

    async def aclose(self) -> None:
        self._running = False
        for reader in list(self._readers.values()):
            if reader.task is not None:
                reader.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader.task
        if self._wake_renewals:
            with contextlib.suppress(Exception):
                await self.redis.delete(*self._wake_renewals)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str, client: str,
                        after: str = "0-0") -> AsyncIterator[Subscription]:
        """The job's events, for a wait or a stream counted as `client`'s."""
        key = events_key(job_id)
        sub = Subscription(job_id, after)
        reader = self._reader_of(key)  # which lasts while it reads `key`
        self._subs.setdefault(key, set()).add(sub)
        reader.cursors[key] = _earlier(reader.cursors.get(key, after), after)
        self._count += 1
        self._by_client[client] += 1
        self._start(reader)
        if reader.blocked and reader.waking is None:
            reader.waking = asyncio.create_task(self._wake(reader.wake_key))
        try:
            yield sub
        finally:
            self._count -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]
            subs = self._subs[key]
            subs.discard(sub)
            if not subs:
                del self._subs[key], reader.cursors[key]

    def _reader_of(self, key: str) -> _Reader:
        slot = key_slot(key.encode()) if isinstance(self.redis, RedisCluster) else None
        reader = self._readers.get(slot)
        if reader is None:
            reader = self._readers[slot] = _Reader(slot, gateway_wake_key(self._process, slot))
        return reader

    def _start(self, reader: _Reader) -> None:
        if self._running and reader.task is None:
            reader.task = asyncio.create_task(self._run(reader),
                                              name=f"event-hub-{reader.slot}")

    async def _wake(self, key: str) -> None:
        renew = time.monotonic() > self._wake_renewals.get(key, 0.0)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"type": "wake", "data": "{}"}, maxlen=10, approximate=True)
                if renew:
                    pipe.expire(key, WAKE_TTL_SECONDS)
                await pipe.execute()
            if renew:
                self._wake_renewals[key] = time.monotonic() + WAKE_RENEW_SECONDS
        except Exception as exc:  # the reader notices Redis is down by itself
            log.debug("event_hub_wake_failed", error=type(exc).__name__)

    async def _run(self, reader: _Reader) -> None:
        try:
            while reader.streams:
                try:
                    await self._read_once(reader)
                    self._failing.discard(reader.slot)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failing.add(reader.slot)
                    log.warning("event_hub_read_failed", slot=reader.slot,
                                error=type(exc).__name__)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                # A read costs in proportion to the streams it names: with many,
                # let events gather a moment, so each read carries more of them.
                if reader.streams > 100:
                    await asyncio.sleep(min(MAX_GATHER_SECONDS, reader.streams * 5e-6))
        finally:
            # No await since the last look at `streams`: no one joined meanwhile,
            # and the next to join makes a new reader.
            del self._readers[reader.slot]
            self._failing.discard(reader.slot)

    async def _read_once(self, reader: _Reader) -> None:
        reader.blocked, reader.waking = True, None
        # The command itself rather than `xread()`, which walks every reply
        # entry again for redis-py's own latency metrics.
        started = dict(reader.cursors)
        keys = list(started)
        route: dict[str, Any] = {"keys": keys}
        if isinstance(self.redis, RedisCluster):
            # Sent to the slot's node as redis-py's slot table has it: routed by
            # its keys, an XREAD costs two COMMAND GETKEYS first. A slot moved
            # since is still followed (MOVED), and a failed read reloads the table.
            await self.redis.initialize()
            route = {"target_nodes": self.redis.get_node_from_key(reader.wake_key)}
        try:
            reply = await self.redis.execute_command(
                "XREAD", "COUNT", READ_COUNT, "BLOCK", MAX_BLOCK_MS, "STREAMS",
                *keys, *started.values(), **route)
        finally:
            reader.blocked = False
        for key, events in parse_events(cast(StreamReply, reply)).items():
            # A subscriber that joined during the read from an earlier position
            # moved the cursor back: it stays there, so the next read brings
            # what this one did not, and this one's events wait for it.
            if reader.cursors.get(key) == started[key]:
                reader.cursors[key] = events[-1].id
            for sub in list(self._subs.get(key, ())):
                if sub.follows(started[key]):
                    sub.deliver(events)
