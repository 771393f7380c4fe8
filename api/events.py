"""One reader per gateway process for the event streams of every waiting client.

A client waiting on POST /chat, or reading a job's events over SSE, does not
hold a Redis connection: it subscribes here, and one task reads the streams
of all subscribed jobs in a single blocking XREAD and hands each event to its
subscribers in memory. A thousand waiting clients cost one connection and
one command per round, not a thousand connections (redis-py's pool would
refuse them) and a thousand commands.

A subscriber that joins while the read is blocked wakes it through a small
stream of this process's own, so it waits for no one else's block to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import cast

import structlog
from redis.asyncio import Redis

from api.errors import BUSY_RETRY_AFTER, TooManyRequests, Unavailable
from shared.job_events import Event, StreamReply, parse_events
from shared.redis_client import MAX_BLOCK_MS
from shared.store.keys import events_key, gateway_wake_key

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


class EventHub:
    """Subscriptions to job event streams, served by one reader task."""

    def __init__(self, redis: Redis, capacity: int, per_client: int | None = None) -> None:
        self.redis = redis
        self.capacity = capacity
        # One client's share: no key (or address) can hold every place.
        self.per_client = per_client or capacity
        self._by_client: Counter[str] = Counter()
        # By stream key: who waits on it, and where the next read starts (its
        # least advanced subscriber's position; the others skip what they have).
        self._subs: dict[str, set[Subscription]] = {}
        self._cursors: dict[str, str] = {}
        self._count = 0
        self._joined = asyncio.Event()
        self._wake_key = gateway_wake_key(uuid.uuid4().hex)
        self._cursors[self._wake_key] = "0-0"
        self._blocked = False
        self._waking: asyncio.Task[None] | None = None
        self._wake_expires_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

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
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.redis.delete(self._wake_key)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str, client: str,
                        after: str = "0-0") -> AsyncIterator[Subscription]:
        """The job's events, for a wait or a stream counted as `client`'s."""
        key = events_key(job_id)
        sub = Subscription(job_id, after)
        self._subs.setdefault(key, set()).add(sub)
        self._cursors[key] = _earlier(self._cursors.get(key, after), after)
        self._count += 1
        self._by_client[client] += 1
        self._joined.set()
        if self._blocked and self._waking is None:
            self._waking = asyncio.create_task(self._wake())
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
                del self._subs[key], self._cursors[key]

    async def _wake(self) -> None:
        renew = time.monotonic() > self._wake_expires_at
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"type": "wake", "data": "{}"}, maxlen=10,
                          approximate=True)
                if renew:
                    pipe.expire(self._wake_key, WAKE_TTL_SECONDS)
                await pipe.execute()
            if renew:
                self._wake_expires_at = time.monotonic() + WAKE_RENEW_SECONDS
        except Exception as exc:  # the reader notices Redis is down by itself
            log.debug("event_hub_wake_failed", error=type(exc).__name__)

    async def _run(self) -> None:
        while True:
            if not self._subs:
                self._joined.clear()
                await self._joined.wait()
                continue
            try:
                await self._read_once()
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.healthy = False
                log.warning("event_hub_read_failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            # A read costs in proportion to the streams it names: with many,
            # let events gather a moment, so each read carries more of them.
            if len(self._cursors) > 100:
                await asyncio.sleep(min(MAX_GATHER_SECONDS, len(self._cursors) * 5e-6))

    async def _read_once(self) -> None:
        self._blocked, self._waking = True, None
        # The command itself rather than `xread()`, which walks every reply
        # entry again for redis-py's own latency metrics.
        started = dict(self._cursors)
        keys = list(started)
        try:
            reply = await self.redis.execute_command(
                "XREAD", "COUNT", READ_COUNT, "BLOCK", MAX_BLOCK_MS, "STREAMS",
                *keys, *started.values(), keys=keys)  # type: ignore[no-untyped-call]
        finally:
            self._blocked = False
        for key, events in parse_events(cast(StreamReply, reply)).items():
            # A subscriber that joined during the read from an earlier position
            # moved the cursor back: it stays there, so the next read brings
            # what this one did not, and this one's events wait for it.
            if self._cursors.get(key) == started[key]:
                self._cursors[key] = events[-1].id
            for sub in list(self._subs.get(key, ())):
                if sub.follows(started[key]):
                    sub.deliver(events)
