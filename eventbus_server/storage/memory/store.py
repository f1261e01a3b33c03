"""The `persist: false` backend: the newest `capacity` events in a ring, and at
most `max_bytes` of them as JSON (10,000 events of 1 MB would be 10 GB of memory).

Event ids keep counting when old events fall out of the ring, so a cursor
taken before a restart-free overflow still means the same thing. Idempotency
keys live apart from the ring: a key stays known for the dedup window even
after its event was overwritten. The window counts from when a key was
received (not the event's timestamp, which a client may set), so the keys sit
in receipt order and `find_keys` forgets those received before its `since_ts`:
the bus's dedup window only ever moves forward.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import islice
from operator import attrgetter

from eventbus_core.codec import dumps
from eventbus_core.event import Event, now_ms
from eventbus_server.storage.base import EventQuery, NewEvent, Storage, StoredKey, TopicStats
from eventbus_server.storage.memory.consumers import MemoryConsumerStore
from eventbus_server.storage.memory.rules import MemoryRuleStore
from eventbus_server.storage.memory.schedules import MemoryScheduleStore

__all__ = ["MemoryStorage"]

_event_id = attrgetter("event_id")

#: What an event is counted beyond its payload and metadata: its ids, topic, timestamp.
EVENT_OVERHEAD_BYTES = 128


class MemoryStorage(MemoryRuleStore, MemoryConsumerStore, MemoryScheduleStore, Storage):
    """A bounded in-memory event log; nothing survives the process."""

    kind = "memory"

    def __init__(
        self, capacity: int, *, max_bytes: int | None = None, max_keys: int = 100_000
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        MemoryRuleStore.__init__(self, max_firings=max(capacity, 1000))
        MemoryConsumerStore.__init__(self)
        MemoryScheduleStore.__init__(self)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._sizes: deque[int] = deque()  # each ring event's size as JSON, in ring order
        self._bytes = 0
        self._last_id = 0
        # topic -> [count, last_event_id, last_timestamp] of the events in the ring
        self._topics: dict[str, list[int]] = {}
        # Insertion order is roughly timestamp order, so expiry pops from the front.
        self._keys: dict[str, tuple[StoredKey, int]] = {}  # key: (its event, received at)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def append(
        self, events: Sequence[NewEvent], *, keys_since_ts: int | None = None
    ) -> list[Event]:
        return self.append_now(events)

    def append_now(self, events: Sequence[NewEvent]) -> list[Event]:
        stored = []
        for new in events:
            self._last_id += 1
            event = new.stored(self._last_id)
            size = _size(new) if self.max_bytes is not None else 0
            # The newest event always stays, however large.
            while self._ring and (len(self._ring) == self.capacity or self._over(size)):
                self._forget(self._ring.popleft())
            self._ring.append(event)
            self._sizes.append(size)
            self._bytes += size
            self._count(event)
            if new.idempotency_key is not None:
                self._remember(new.idempotency_key, StoredKey(event.event_id, event.timestamp))
            stored.append(event)
        return stored

    async def append_due(self, now_ms: int, *, bus_id: str, limit: int) -> list[Event]:
        return await self.append(self.take_due_scheduled(now_ms, bus_id=bus_id, limit=limit))

    async def find_keys(self, keys: Sequence[str], since_ts: int) -> dict[str, StoredKey]:
        self._expire_keys(since_ts)
        found = {}
        for key in keys:
            hit = self._keys.get(key)
            if hit is not None and hit[1] >= since_ts:
                found[key] = hit[0]
        return found

    async def query(self, query: EventQuery) -> list[Event]:
        hits: list[Event] = []
        if query.limit <= 0:
            return hits
        candidates = (
            self._newer_than(query.since) if query.order == "asc" else self._older_than(query.since)
        )
        for event in candidates:
            if query.matches(event):
                hits.append(event)
                if len(hits) == query.limit:
                    break
        return hits

    async def list_topics(self) -> list[TopicStats]:
        return [TopicStats(topic, *row) for topic, row in sorted(self._topics.items())]

    async def last_event_id(self) -> int:
        return self._last_id

    async def count(self) -> int:
        return len(self._ring)

    async def prune(self, *, max_events: int | None, min_timestamp: int | None) -> int:
        before = len(self._ring)
        if min_timestamp is not None and any(e.timestamp < min_timestamp for e in self._ring):
            # Client-set timestamps need not follow ids, so old ones can sit anywhere.
            kept = [
                (e, size)
                for e, size in zip(self._ring, self._sizes, strict=True)
                if e.timestamp >= min_timestamp
            ]
            self._ring = deque((e for e, _ in kept), maxlen=self.capacity)
            self._sizes = deque(size for _, size in kept)
            self._bytes = sum(self._sizes)
            self._recount()
        if max_events is not None:
            while len(self._ring) > max_events:
                self._forget(self._ring.popleft())
        return before - len(self._ring)

    # -- ring bookkeeping ----------------------------------------------------

    def _newer_than(self, since: int) -> Iterator[Event]:
        """Events with id > since, oldest first."""
        ring = self._ring
        start = bisect_right(ring, since, key=_event_id)
        if start <= len(ring) // 2:
            return islice(ring, start, None)
        # A cursor near the head (the usual case): walk in from the newer end.
        tail = list(islice(reversed(ring), len(ring) - start))
        tail.reverse()
        return iter(tail)

    def _older_than(self, since: int) -> Iterator[Event]:
        """Events with id < since (every event when since is 0), newest first."""
        ring = self._ring
        stop = len(ring) if since <= 0 else bisect_left(ring, since, key=_event_id)
        return islice(reversed(ring), len(ring) - stop, None)

    def _count(self, event: Event) -> None:
        row = self._topics.get(event.topic)
        if row is None:
            self._topics[event.topic] = [1, event.event_id, event.timestamp]
        else:
            row[0] += 1
            row[1] = event.event_id
            row[2] = event.timestamp

    def _over(self, size: int) -> bool:
        return self.max_bytes is not None and self._bytes + size > self.max_bytes

    def _forget(self, event: Event) -> None:
        """The oldest event (just popped off the ring) leaves."""
        self._bytes -= self._sizes.popleft()
        # The oldest event leaves, so the topic's last event (if any is left) stays put.
        row = self._topics[event.topic]
        row[0] -= 1
        if row[0] == 0:
            del self._topics[event.topic]

    def _recount(self) -> None:
        self._topics = {}
        for event in self._ring:
            self._count(event)

    def _remember(self, key: str, hit: StoredKey) -> None:
        # The bus only stores a key it did not find in the window, so any old entry
        # has expired: move the key to the newest end.
        self._keys.pop(key, None)
        self._keys[key] = (hit, now_ms())
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]

    def _expire_keys(self, since_ts: int) -> None:
        keys = self._keys
        while keys:
            oldest = next(iter(keys))
            if keys[oldest][1] >= since_ts:
                return
            del keys[oldest]


def _size(new: NewEvent) -> int:
    metadata = len(dumps(new.metadata)) if new.metadata is not None else 0
    return len(dumps(new.payload)) + metadata + EVENT_OVERHEAD_BYTES
