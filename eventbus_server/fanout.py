"""Fan-out of committed events and finished firings to subscriptions (DESIGN.md §5, §6).

Both kinds of push stream, `subscribe_topic` (notifications `event`) and
`subscribe_firings` (`rule_fired`), live here under one policy, and a
connection may hold at most `max_subscriptions` of them together.

Each subscription has its own bounded buffer, so a slow subscriber never
blocks the writer or other subscribers: when its connection stops draining
(the transport asked us to pause writing), events wait in the buffer; once the
buffer holds more than `subscriber_buffer` events, or the notifications held
for the connection (all its subscriptions together) pass `max_output_bytes`,
the subscription that would hold more gets a `lagged` notification with
`resume_since` and is dropped. It resumes from storage, which is where the
events are anyway. What waits is the encoded item in a buffer of its own size,
counted as the line it will become: a count alone let 10,000 firings of 4 KB
each hold ~100 MB for one connection that never read.

A firing subscription lags the same way; its `resume_since` is a firing_id
cursor below every firing it missed (firings finish out of id order), for
`list_firings {since}`.

A subscription with `since` first replays stored events, then goes live. The
seam is gapless: the subscription is registered (and buffers live events)
*before* the stored events are read, and live events at or below the last
replayed id are skipped. The replay goes live once a page reaches the first
event held live (everything after it is held), not when a page comes back
empty: a busy writer never lets one. A replay reads one page at a time under
its connection's `heavy_read`, like a `poll_events` page: a connection holds
one page in memory, whatever number of subscriptions replay on it (a thousand
replays each holding an 8 MiB page took one non-reading connection to 1.2 GB).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from eventbus_core.codec import compact, dumps, dumps_line
from eventbus_core.errors import Overloaded
from eventbus_core.event import Event
from eventbus_core.jsonrpc import merged_notification_frame, notification, notification_frame
from eventbus_core.sse import event_frame, lagged_frame
from eventbus_core.topics import compile_topic_pattern
from eventbus_core.trn import compile_trn_pattern
from eventbus_server.storage.base import READ_PAGE_BYTES, EventQuery, Firing, Storage
from eventbus_server.storage.reader import LogReader

__all__ = ["FanOut", "FiringSubscription", "SseSubscription", "Subscriber", "Subscription"]

log = logging.getLogger("eventbus.fanout")

#: A bus's default max_output_bytes, for a fan-out built without one.
DEFAULT_MAX_HELD_BYTES = 16 * 1_048_576

#: One held item: its id (event_id or firing_id) and its JSON, in a buffer of its own size.
#: The same tuple is shared by every subscription that holds it.
Held = tuple[int, bytes]


class Subscriber(Protocol):
    """The connection side of a subscription: where notification lines go."""

    @property
    def can_write(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def wait_writable(self) -> None: ...

    def heavy_read(self) -> AbstractAsyncContextManager[None]:
        """Held around reading a page of stored events (one at a time per connection)."""
        ...


class Subscription:
    """One `subscribe_topic` of one connection."""

    __slots__ = (
        "_head",
        "_on_start",
        "_replay_overflowed",
        "_replaying",
        "_tail",
        "buffer_limit",
        "dropped",
        "filter_key",
        "held_bytes",
        "id",
        "last_sent_id",
        "matches",
        "pending",
        "query",
        "replay",
        "subscriber",
    )

    def __init__(
        self,
        sub_id: str,
        query: EventQuery,
        subscriber: Subscriber,
        buffer_limit: int,
        *,
        replay: bool,
        on_start: Callable[[Subscription], None],
    ) -> None:
        self.id = sub_id
        self.replay = replay  # read stored events after query.since before going live
        self.query = query
        self.subscriber = subscriber
        self.buffer_limit = buffer_limit
        self.matches = _event_filter(query)
        self.filter_key = (query.topic, query.source_trn, query.target_trn)
        self.pending: deque[Held] = deque()
        #: The lines `pending` will become, in bytes (counted against the connection's output).
        self.held_bytes = 0
        self.last_sent_id = query.since
        self.dropped = False
        self._replaying = True  # held until started, so nothing precedes the subscribe reply
        self._replay_overflowed = False
        self._on_start = on_start
        self._head, self._tail = self._frame(sub_id)

    @staticmethod
    def _frame(sub_id: str) -> tuple[bytes, bytes]:
        return notification_frame("event", {"subscription": sub_id}, "event")

    def start(self) -> None:
        """Begin delivery; called once the subscribe reply has been written."""
        self._on_start(self)

    def line(self, item_id: int, data: bytes) -> bytes:
        """The notification carrying one encoded item."""
        return b"".join((self._head, data, self._tail))

    def lagged(self, resume_since: int) -> bytes:
        """The last thing a subscription that fell behind is sent."""
        return dumps_line(
            notification("lagged", {"subscription": self.id, "resume_since": resume_since})
        )

    def line_bytes(self, data_bytes: int, items: int = 1) -> int:
        """How long the lines of `items` items of `data_bytes` bytes in all are."""
        return data_bytes + items * (len(self._head) + len(self._tail))

    def is_new(self, item_id: int) -> bool:
        """Whether the item is past what was sent (the replay→live seam repeats some)."""
        return item_id > self.last_sent_id

    def sent(self, item_id: int) -> None:
        self.last_sent_id = item_id

    def resume_since(self) -> int:
        return self.last_sent_id


class FiringSubscription(Subscription):
    """One `subscribe_firings` of one connection: `rule_fired` for each finished firing."""

    __slots__ = ("rule_id",)

    def __init__(
        self,
        sub_id: str,
        rule_id: str | None,
        subscriber: Subscriber,
        buffer_limit: int,
        on_start: Callable[[Subscription], None],
    ) -> None:
        super().__init__(
            sub_id, EventQuery(), subscriber, buffer_limit, replay=False, on_start=on_start
        )
        self.rule_id = rule_id
        # Nothing to replay, but held until started all the same: in a batch the reply
        # naming the subscription waits for every call, and a rule_fired may not precede it.

    def wants(self, firing: Firing) -> bool:
        return self.rule_id is None or self.rule_id == firing.rule_id

    @staticmethod
    def _frame(sub_id: str) -> tuple[bytes, bytes]:
        # The firing's own object, with the subscription's id, is the params.
        return merged_notification_frame("rule_fired", {"subscription": sub_id})

    def line(self, item_id: int, data: bytes) -> bytes:
        return b"".join((self._head, memoryview(data)[1:], self._tail))

    def line_bytes(self, data_bytes: int, items: int = 1) -> int:
        return data_bytes + items * (len(self._head) + len(self._tail) - 1)

    def is_new(self, item_id: int) -> bool:
        return True  # firings finish out of id order, and there is no replay to overlap

    def sent(self, item_id: int) -> None:
        self.last_sent_id = max(self.last_sent_id, item_id)

    def resume_since(self) -> int:
        # Below every firing it missed, so list_firings {since} returns them all.
        missed = [firing_id for firing_id, _ in self.pending]
        return min(missed) - 1 if missed else self.last_sent_id


class SseSubscription(Subscription):
    """`GET /events` (DESIGN §14): the same stream as `subscribe_topic`, under the same
    buffers and `lagged` policy, framed as Server-Sent Events instead of notifications."""

    __slots__ = ()

    #: What `id: <event_id>\n` takes at most: held bytes are counted before the id is known.
    _ID_LINE_BYTES = 24

    @staticmethod
    def _frame(sub_id: str) -> tuple[bytes, bytes]:
        return b"", b""

    def line(self, item_id: int, data: bytes) -> bytes:
        return event_frame(item_id, data)

    def line_bytes(self, data_bytes: int, items: int = 1) -> int:
        return data_bytes + items * (len(event_frame(0, b"")) - 1 + self._ID_LINE_BYTES)

    def lagged(self, resume_since: int) -> bytes:
        return lagged_frame(resume_since)


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


class _Encoded:
    """The events of one `publish`, each encoded once for every subscription that gets it."""

    __slots__ = ("_held", "_sent")

    def __init__(self) -> None:
        self._sent: dict[int, bytes] = {}
        self._held: dict[int, Held] = {}

    def sent(self, event: Event) -> bytes:
        data = self._sent.get(event.event_id)
        if data is None:
            data = self._sent[event.event_id] = dumps(event)
        return data

    def held(self, event: Event) -> Held:
        item = self._held.get(event.event_id)
        if item is None:
            # Kept a while: not in orjson's buffer, which reserves several times its length.
            item = self._held[event.event_id] = (event.event_id, compact(self.sent(event)))
        return item


class _Matching:
    """What one filter matches in one `publish`, shared by the subscriptions with that filter."""

    __slots__ = ("_encoded", "_held", "_held_bytes", "events")

    def __init__(self, events: list[Event], encoded: _Encoded) -> None:
        self.events = events
        self._encoded = encoded
        self._held: list[Held] | None = None
        self._held_bytes = 0

    def held(self) -> tuple[list[Held], int]:
        """The events as held items, and their encoded bytes in all."""
        if self._held is None:
            self._held = [self._encoded.held(event) for event in self.events]
            self._held_bytes = sum(len(data) for _, data in self._held)
        return self._held, self._held_bytes


class FanOut:
    """Delivers committed events and finished firings to every matching subscription of one bus.

    Args:
        storage: where a replay reads stored events.
        subscriber_buffer: items one subscription may hold while its connection does not drain.
        max_subscriptions: subscriptions of both kinds one connection may hold.
        max_held_bytes: notification bytes all the subscriptions of one connection may hold
            (the bus's max_output_bytes); a replay page is at most a quarter of it.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        subscriber_buffer: int,
        max_subscriptions: int,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
    ) -> None:
        self._reader = LogReader(storage)
        self._subscriber_buffer = subscriber_buffer
        self._max_subscriptions = max_subscriptions
        self._max_held_bytes = max_held_bytes
        self._page_bytes = min(READ_PAGE_BYTES, max_held_bytes // 4)
        self._subscriptions: dict[str, Subscription] = {}
        self._firing_subscriptions: dict[str, FiringSubscription] = {}
        #: Each connection's subscriptions of both kinds, for the cap and for cleanup.
        self._owned: dict[Subscriber, dict[str, Subscription]] = {}
        #: The notification bytes each connection's subscriptions hold, together.
        self._held: dict[Subscriber, int] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.lagged_total = 0

    def __len__(self) -> int:
        return len(self._subscriptions) + len(self._firing_subscriptions)

    def subscribe(
        self,
        query: EventQuery,
        subscriber: Subscriber,
        *,
        replay: bool,
        kind: type[Subscription] = Subscription,
    ) -> Subscription:
        """Register a subscription (`kind`: its framing); it buffers live events until its `start()`."""
        self._check_room(subscriber)
        sub = kind(
            f"sub-{next(self._ids)}",
            query,
            subscriber,
            self._subscriber_buffer,
            replay=replay,
            on_start=self._start,
        )
        self._subscriptions[sub.id] = sub
        self._owned.setdefault(subscriber, {})[sub.id] = sub
        return sub

    def subscribe_firings(self, rule_id: str | None, subscriber: Subscriber) -> FiringSubscription:
        """Register a firing subscription; it delivers from the next finished firing on."""
        self._check_room(subscriber)
        sub = FiringSubscription(
            f"firings-{next(self._ids)}", rule_id, subscriber, self._subscriber_buffer, self._start
        )
        self._firing_subscriptions[sub.id] = sub
        self._owned.setdefault(subscriber, {})[sub.id] = sub
        return sub

    def _check_room(self, subscriber: Subscriber) -> None:
        held = len(self._owned.get(subscriber, ()))
        if held >= self._max_subscriptions:
            raise Overloaded(
                f"this connection holds {held} subscriptions, the limit (max_subscriptions);"
                " unsubscribe one first or open another connection"
            )

    def _start(self, sub: Subscription) -> None:
        if sub.dropped:
            return
        if not sub.replay:
            sub._replaying = False
            self._flush(sub)
            return
        task = asyncio.get_running_loop().create_task(self._replay(sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self._subscriptions.pop(sub_id, None) or self._firing_subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        owned = self._owned.get(sub.subscriber)
        if owned is not None:
            owned.pop(sub_id, None)
            if not owned:
                del self._owned[sub.subscriber]
        sub.dropped = True
        self._forget_held(sub)
        return True

    def unsubscribe_own(self, subscriber: Subscriber, sub_id: str) -> bool:
        """Drop a subscription of this connection's; False when it holds none by that id."""
        return sub_id in self._owned.get(subscriber, ()) and self.unsubscribe(sub_id)

    def owned_by(self, subscriber: Subscriber) -> list[str]:
        """The ids of every subscription (both kinds) the connection holds."""
        return list(self._owned.get(subscriber, ()))

    def drop_all(self, subscriber: Subscriber) -> None:
        """The connection is gone: forget its subscriptions."""
        for sub_id in self.owned_by(subscriber):
            self.unsubscribe(sub_id)
        self._held.pop(subscriber, None)

    def publish(self, events: Sequence[Event]) -> None:
        """Offer committed events to every subscription; never blocks."""
        if not self._subscriptions:
            return
        # Subscriptions with the same filters see the same events: match once per filter,
        # so a connection with a thousand `>` subscriptions costs one match per event.
        matching_by_filter: dict[tuple[str, str | None, str | None], _Matching] = {}
        encoded = _Encoded()
        for sub in list(self._subscriptions.values()):
            if sub.dropped:
                continue  # lagged by this very publish
            matching = matching_by_filter.get(sub.filter_key)
            if matching is None:
                matching = matching_by_filter[sub.filter_key] = _Matching(
                    [e for e in events if sub.matches(e)], encoded
                )
            if not matching.events or matching.events[-1].event_id <= sub.last_sent_id:
                continue
            if sub._replaying or sub.pending or not sub.subscriber.can_write:
                self._hold_matching(sub, matching)
                continue
            for event in matching.events:
                if event.event_id <= sub.last_sent_id:
                    continue
                sub.subscriber.write(sub.line(event.event_id, encoded.sent(event)))
                sub.last_sent_id = event.event_id

    def publish_firing(self, firing: Firing) -> None:
        """Offer a finished firing to every firing subscription that wants it; never blocks."""
        data: bytes | None = None
        held: Held | None = None
        for sub in list(self._firing_subscriptions.values()):
            if sub.dropped or not sub.wants(firing):
                continue
            if data is None:
                data = dumps(firing.wire())
            if sub._replaying or sub.pending or not sub.subscriber.can_write:
                if held is None:
                    held = (firing.firing_id, compact(data))
                self._hold(sub, [held], len(held[1]))
                continue
            sub.subscriber.write(sub.line(firing.firing_id, data))
            sub.sent(firing.firing_id)

    def resume(self, subscriber: Subscriber) -> None:
        """The subscriber's connection drains again: flush what waited."""
        for sub in list(self._owned.get(subscriber, {}).values()):
            if not sub._replaying:
                self._flush(sub)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._subscriptions.clear()
        self._firing_subscriptions.clear()
        self._owned.clear()
        self._held.clear()

    def _hold_matching(self, sub: Subscription, matching: _Matching) -> None:
        """Hold a batch's events for a subscription that cannot take them now (one extend)."""
        items, data_bytes = matching.held()
        if items[0][0] <= sub.last_sent_id:  # the replay→live seam: some were sent already
            items = [item for item in items if item[0] > sub.last_sent_id]
            data_bytes = sum(len(data) for _, data in items)
        self._hold(sub, items, data_bytes)

    def _hold(self, sub: Subscription, items: list[Held], data_bytes: int) -> None:
        sub.pending.extend(items)
        held = sub.line_bytes(data_bytes, len(items))
        sub.held_bytes += held
        self._held[sub.subscriber] = self._held.get(sub.subscriber, 0) + held
        if len(sub.pending) > sub.buffer_limit or self._held[sub.subscriber] > self._max_held_bytes:
            self._overflow(sub)

    def _forget_held(self, sub: Subscription) -> None:
        """Drop what the subscription holds, and its count against its connection."""
        self._release(sub, sub.held_bytes)
        sub.pending.clear()

    def _release(self, sub: Subscription, line_bytes: int) -> None:
        """`line_bytes` of what the subscription held went out, or were dropped."""
        if not line_bytes:
            return
        sub.held_bytes -= line_bytes
        left = self._held.get(sub.subscriber, 0) - line_bytes
        if left > 0:
            self._held[sub.subscriber] = left
        else:
            self._held.pop(sub.subscriber, None)

    def _overflow(self, sub: Subscription) -> None:
        """The subscription holds more than it may: it lags, or while replaying reads further instead."""
        if sub._replaying and not isinstance(sub, FiringSubscription):
            # Everything held is also in storage: forget it and replay further instead.
            self._forget_held(sub)
            sub._replay_overflowed = True
            return
        self._lag(sub)

    def _lag(self, sub: Subscription) -> None:
        self.lagged_total += 1
        resume_since = sub.resume_since()
        log.info("subscription=%s lagged resume_since=%d", sub.id, resume_since)
        self.unsubscribe(sub.id)
        sub.subscriber.write(sub.lagged(resume_since))

    def _flush(self, sub: Subscription) -> None:
        released = 0
        while sub.pending and sub.subscriber.can_write:
            item_id, data = sub.pending.popleft()
            released += sub.line_bytes(len(data))
            if sub.is_new(item_id):
                sub.subscriber.write(sub.line(item_id, data))
                sub.sent(item_id)
        self._release(sub, released)

    async def _replay(self, sub: Subscription) -> None:
        try:
            await self._replay_stored(sub)
            # No await from here on: the switch to live cannot interleave with publish().
            sub._replaying = False
            self._flush(sub)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription=%s replay failed; dropping it", sub.id)
            self._lag(sub)

    async def _replay_stored(self, sub: Subscription) -> None:
        """Send stored events until the replay reaches what the subscription holds live."""
        while not sub.dropped:
            # One page of the connection's in memory at a time, read only once its
            # output has room: the rest of the log stays in storage until then.
            async with sub.subscriber.heavy_read():
                if sub.dropped:
                    return  # unsubscribed (or the connection closed) while it waited its turn
                # Held events forgotten before this read are in what it reads; not so
                # those forgotten from here on, which may be newer than what it sees.
                sub._replay_overflowed = False
                page = await self._reader.page(
                    sub.last_sent_id, match=sub.query, max_bytes=self._page_bytes
                )
                for event in page:
                    if not sub.subscriber.can_write:
                        await sub.subscriber.wait_writable()
                    if sub.dropped:
                        return  # unsubscribed (or the connection closed) while we read storage
                    sub.subscriber.write(sub.line(event.event_id, dumps(event)))
                    sub.last_sent_id = event.event_id
            if sub.pending and sub.pending[0][0] <= sub.last_sent_id:
                # The replay has reached what the subscription holds live. Commits are
                # published in id order, so every matching event after the first one
                # held is held too (or was sent): go live now. Reading on until a page
                # came back empty chased a busy writer page by page and never went live
                # (one emitter on SQLite: ~1,000 reads a second for as long as it emitted).
                return
            # A page may be short because of its byte bound: read on until one is empty
            # (and again if held events were forgotten while it was read).
            if not page and not sub._replay_overflowed:
                return
