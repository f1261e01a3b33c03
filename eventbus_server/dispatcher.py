"""Fan-out of committed events to subscriptions (DESIGN.md §5, §6).

Each subscription has its own bounded buffer, so a slow subscriber never
blocks the writer or other subscribers: when its connection stops draining
(the transport asked us to pause writing), events wait in the buffer; once the
buffer holds more than `subscriber_buffer` events, the subscriber gets a
`lagged` notification with `resume_since` and is dropped. It resumes from
storage, which is where the events are anyway.

A subscription with `since` first replays stored events, then goes live. The
seam is gapless: the subscription is registered (and buffers live events)
*before* the stored events are read, and live events at or below the last
replayed id are skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from eventbus_core.codec import dumps
from eventbus_core.envelope import Event
from eventbus_core.topics import compile_topic_pattern
from eventbus_core.trn import compile_trn_pattern

from .storage.base import EventQuery, Storage

__all__ = ["Dispatcher", "Subscriber", "Subscription"]

log = logging.getLogger("eventbus.dispatcher")

CATCH_UP_PAGE = 1000


class Subscriber(Protocol):
    """The connection side of a subscription: where notification lines go."""

    @property
    def can_write(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def wait_writable(self) -> None: ...


class Subscription:
    """One `subscribe_topic` of one connection."""

    __slots__ = (
        "_prefix",
        "_replay_overflowed",
        "_replaying",
        "buffer_limit",
        "dropped",
        "id",
        "last_sent_id",
        "matches",
        "pending",
        "query",
        "subscriber",
    )

    def __init__(self, sub_id: str, query: EventQuery, subscriber: Subscriber, buffer_limit: int) -> None:
        self.id = sub_id
        self.query = query
        self.subscriber = subscriber
        self.buffer_limit = buffer_limit
        self.matches = _event_filter(query)
        self.pending: deque[Event] = deque()
        self.last_sent_id = query.since
        self.dropped = False
        self._replaying = True  # held until started, so nothing precedes the subscribe reply
        self._replay_overflowed = False
        self._prefix = b'{"jsonrpc":"2.0","method":"event","params":{"subscription":' + dumps(sub_id) + b',"event":'

    def notification(self, encoded_event: bytes) -> bytes:
        return self._prefix + encoded_event + b"}}\n"


def _event_filter(query: EventQuery) -> Callable[[Event], bool]:
    topic_ok = compile_topic_pattern(query.topic)
    source_ok = compile_trn_pattern(query.source_trn) if query.source_trn else None
    target_ok = compile_trn_pattern(query.target_trn) if query.target_trn else None

    def matches(event: Event) -> bool:
        if not topic_ok(event.topic):
            return False
        if source_ok is not None and (event.source_trn is None or not source_ok(event.source_trn)):
            return False
        return target_ok is None or (event.target_trn is not None and target_ok(event.target_trn))

    return matches


class Dispatcher:
    """Delivers committed events to every matching subscription of one bus."""

    def __init__(self, storage: Storage, *, subscriber_buffer: int) -> None:
        self._storage = storage
        self._subscriber_buffer = subscriber_buffer
        self._subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.lagged_total = 0

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, query: EventQuery, subscriber: Subscriber) -> Subscription:
        """Register a subscription; it buffers live events until `start` is called."""
        sub = Subscription(f"sub-{next(self._ids)}", query, subscriber, self._subscriber_buffer)
        self._subscriptions[sub.id] = sub
        return sub

    def start(self, sub: Subscription, *, replay: bool) -> None:
        """Begin delivery, after the subscribe reply has been written."""
        if sub.dropped:
            return
        if not replay:
            sub._replaying = False
            self._flush(sub)
            return
        task = asyncio.get_running_loop().create_task(self._replay(sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self._subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        sub.dropped = True
        sub.pending.clear()
        return True

    def owned_by(self, subscriber: Subscriber) -> list[str]:
        return [s.id for s in self._subscriptions.values() if s.subscriber is subscriber]

    def publish(self, events: Sequence[Event]) -> None:
        """Offer committed events to every subscription; never blocks."""
        if not self._subscriptions:
            return
        encoded: dict[int, bytes] = {}
        for sub in list(self._subscriptions.values()):
            for event in events:
                if event.event_id <= sub.last_sent_id or not sub.matches(event):
                    continue
                if sub._replaying or sub.pending or not sub.subscriber.can_write:
                    self._hold(sub, event)
                    if sub.dropped:
                        break
                    continue
                data = encoded.get(event.event_id)
                if data is None:
                    data = encoded[event.event_id] = dumps(event)
                sub.subscriber.write(sub.notification(data))
                sub.last_sent_id = event.event_id

    def resume(self, subscriber: Subscriber) -> None:
        """The subscriber's connection drains again: flush what waited."""
        for sub in list(self._subscriptions.values()):
            if sub.subscriber is subscriber and not sub._replaying:
                self._flush(sub)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._subscriptions.clear()

    def _hold(self, sub: Subscription, event: Event) -> None:
        sub.pending.append(event)
        if len(sub.pending) <= sub.buffer_limit:
            return
        if sub._replaying:
            # Everything held is also in storage: forget it and replay further instead.
            sub.pending.clear()
            sub._replay_overflowed = True
            return
        self._lag(sub)

    def _lag(self, sub: Subscription) -> None:
        self.lagged_total += 1
        log.info("subscription=%s lagged resume_since=%d", sub.id, sub.last_sent_id)
        self.unsubscribe(sub.id)
        sub.subscriber.write(
            dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "lagged",
                    "params": {"subscription": sub.id, "resume_since": sub.last_sent_id},
                }
            )
            + b"\n"
        )

    def _flush(self, sub: Subscription) -> None:
        while sub.pending and sub.subscriber.can_write and not sub.dropped:
            event = sub.pending.popleft()
            if event.event_id > sub.last_sent_id:
                sub.subscriber.write(sub.notification(dumps(event)))
                sub.last_sent_id = event.event_id

    async def _replay(self, sub: Subscription) -> None:
        try:
            while True:
                await self._replay_stored(sub)
                if not sub._replay_overflowed:
                    break
                sub._replay_overflowed = False
            # No await from here on: the switch to live cannot interleave with publish().
            sub._replaying = False
            self._flush(sub)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription=%s replay failed; dropping it", sub.id)
            self._lag(sub)

    async def _replay_stored(self, sub: Subscription) -> None:
        while not sub.dropped:
            page = await self._storage.query(_page_after(sub.query, sub.last_sent_id))
            for event in page:
                if not sub.subscriber.can_write:
                    await sub.subscriber.wait_writable()
                if sub.dropped:
                    return  # unsubscribed (or the connection closed) while we read storage
                sub.subscriber.write(sub.notification(dumps(event)))
                sub.last_sent_id = event.event_id
            if len(page) < CATCH_UP_PAGE:
                return


def _page_after(query: EventQuery, since: int) -> EventQuery:
    return EventQuery(
        topic=query.topic,
        since=since,
        limit=CATCH_UP_PAGE,
        source_trn=query.source_trn,
        target_trn=query.target_trn,
    )

