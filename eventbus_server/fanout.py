"""Fan-out of committed events and finished firings to subscriptions (DESIGN.md §5, §6).

Both kinds of push stream, `subscribe_topic` (notifications `event`) and
`subscribe_firings` (`rule_fired`), live here under one policy, and a
connection may hold at most `max_subscriptions` of them together.

Each subscription has its own bounded buffer, so a slow subscriber never
blocks the writer or other subscribers: when its connection stops draining
(the transport asked us to pause writing), events wait in the buffer; once the
buffer holds more than `subscriber_buffer` events, the subscriber gets a
`lagged` notification with `resume_since` and is dropped. It resumes from
storage, which is where the events are anyway.

A firing subscription lags the same way; its `resume_since` is a firing_id
cursor below every firing it missed (firings finish out of id order), for
`list_firings {since}`.

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
from typing import Any, Protocol

from eventbus_core.codec import dumps, dumps_line
from eventbus_core.errors import Overloaded
from eventbus_core.event import Event
from eventbus_core.jsonrpc import notification, notification_frame
from eventbus_core.sse import event_frame, lagged_frame
from eventbus_core.topics import compile_topic_pattern
from eventbus_core.trn import compile_trn_pattern
from eventbus_server.storage.base import EventQuery, Firing, Storage
from eventbus_server.storage.reader import LogReader

__all__ = ["FanOut", "FiringSubscription", "SseSubscription", "Subscriber", "Subscription"]

log = logging.getLogger("eventbus.fanout")

_, _FRAME_TAIL = notification_frame("event", {}, "event")

class Subscriber(Protocol):
    """The connection side of a subscription: where notification lines go."""

    @property
    def can_write(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    async def wait_writable(self) -> None: ...


class Subscription:
    """One `subscribe_topic` of one connection."""

    __slots__ = (
        "_head",
        "_on_start",
        "_replay_overflowed",
        "_replaying",
        "buffer_limit",
        "dropped",
        "filter_key",
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
        self.pending: deque[Event] = deque()
        self.last_sent_id = query.since
        self.dropped = False
        self._replaying = True  # held until started, so nothing precedes the subscribe reply
        self._replay_overflowed = False
        self._on_start = on_start
        self._head, _ = notification_frame("event", {"subscription": sub_id}, "event")

    def start(self) -> None:
        """Begin delivery; called once the subscribe reply has been written."""
        self._on_start(self)

    def frame(self, event: Event, encoded_event: bytes) -> bytes:
        """What the subscriber is sent for one event (`encoded_event` is shared by all)."""
        return self._head + encoded_event + _FRAME_TAIL

    def lagged(self, resume_since: int) -> bytes:
        return dumps_line(notification("lagged", {"subscription": self.id, "resume_since": resume_since}))

    def line_of(self, item: Event) -> bytes:
        return self.frame(item, dumps(item))

    def is_new(self, item: Event) -> bool:
        """Whether `item` is past what was sent (the replay→live seam repeats some)."""
        return item.event_id > self.last_sent_id

    def sent(self, item: Event) -> None:
        self.last_sent_id = item.event_id

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
        super().__init__(sub_id, EventQuery(), subscriber, buffer_limit, replay=False, on_start=on_start)
        self.rule_id = rule_id
        # Nothing to replay, but held until started all the same: in a batch the reply
        # naming the subscription waits for every call, and a rule_fired may not precede it.

    def wants(self, firing: Firing) -> bool:
        return self.rule_id is None or self.rule_id == firing.rule_id

    def line_of(self, item: Firing) -> bytes:  # type: ignore[override]
        return dumps_line(notification("rule_fired", {"subscription": self.id, **item.wire()}))

    def is_new(self, item: Firing) -> bool:  # type: ignore[override]
        return True  # firings finish out of id order, and there is no replay to overlap

    def sent(self, item: Firing) -> None:  # type: ignore[override]
        self.last_sent_id = max(self.last_sent_id, item.firing_id)

    def resume_since(self) -> int:
        # Below every firing it missed, so list_firings {since} returns them all.
        missed = [firing.firing_id for firing in self.pending]  # type: ignore[attr-defined]
        return min(missed) - 1 if missed else self.last_sent_id


class SseSubscription(Subscription):
    """`GET /events` (DESIGN §14): the same stream as `subscribe_topic`, under the same
    buffer and `lagged` policy, framed as Server-Sent Events instead of notifications."""

    __slots__ = ()

    def frame(self, event: Event, encoded_event: bytes) -> bytes:
        return event_frame(event.event_id, encoded_event)

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


class FanOut:
    """Delivers committed events and finished firings to every matching subscription of one bus."""

    def __init__(self, storage: Storage, *, subscriber_buffer: int, max_subscriptions: int) -> None:
        self._reader = LogReader(storage)
        self._subscriber_buffer = subscriber_buffer
        self._max_subscriptions = max_subscriptions
        self._subscriptions: dict[str, Subscription] = {}
        self._firing_subscriptions: dict[str, FiringSubscription] = {}
        #: Each connection's subscriptions of both kinds, for the cap and for cleanup.
        self._owned: dict[Subscriber, dict[str, Subscription]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.lagged_total = 0

    def __len__(self) -> int:
        return len(self._subscriptions) + len(self._firing_subscriptions)

    def subscribe(
        self, query: EventQuery, subscriber: Subscriber, *, replay: bool, kind: type[Subscription] = Subscription
    ) -> Subscription:
        """Register a subscription (`kind`: its framing); it buffers live events until its `start()`."""
        self._check_room(subscriber)
        sub = kind(
            f"sub-{next(self._ids)}", query, subscriber, self._subscriber_buffer, replay=replay, on_start=self._start
        )
        self._subscriptions[sub.id] = sub
        self._owned.setdefault(subscriber, {})[sub.id] = sub
        return sub

    def subscribe_firings(self, rule_id: str | None, subscriber: Subscriber) -> FiringSubscription:
        """Register a firing subscription; it delivers from the next finished firing on."""
        self._check_room(subscriber)
        sub = FiringSubscription(f"firings-{next(self._ids)}", rule_id, subscriber, self._subscriber_buffer, self._start)
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
        sub.pending.clear()
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

    def publish(self, events: Sequence[Event]) -> None:
        """Offer committed events to every subscription; never blocks."""
        if not self._subscriptions:
            return
        # Subscriptions with the same filters see the same events: match once per filter,
        # so a connection with a thousand `>` subscriptions costs one match per event.
        matching_by_filter: dict[tuple[str, str | None, str | None], list[Event]] = {}
        encoded: dict[int, bytes] = {}
        for sub in list(self._subscriptions.values()):
            matching = matching_by_filter.get(sub.filter_key)
            if matching is None:
                matching = matching_by_filter[sub.filter_key] = [e for e in events if sub.matches(e)]
            if not matching or matching[-1].event_id <= sub.last_sent_id:
                continue
            if sub._replaying or sub.pending or not sub.subscriber.can_write:
                self._hold_all(sub, matching)
                continue
            for event in matching:
                if event.event_id <= sub.last_sent_id:
                    continue
                data = encoded.get(event.event_id)
                if data is None:
                    data = encoded[event.event_id] = dumps(event)
                sub.subscriber.write(sub.frame(event, data))
                sub.last_sent_id = event.event_id

    def publish_firing(self, firing: Firing) -> None:
        """Offer a finished firing to every firing subscription that wants it; never blocks."""
        for sub in list(self._firing_subscriptions.values()):
            if not sub.wants(firing):
                continue
            if sub._replaying or sub.pending or not sub.subscriber.can_write:
                self._hold(sub, firing)
                continue
            sub.subscriber.write(sub.line_of(firing))
            sub.sent(firing)

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

    def _hold_all(self, sub: Subscription, events: list[Event]) -> None:
        """Hold a batch's events for a subscription that cannot take them now (one extend)."""
        if events[0].event_id <= sub.last_sent_id:
            events = [e for e in events if e.event_id > sub.last_sent_id]
        sub.pending.extend(events)
        self._check_held(sub)

    def _hold(self, sub: Subscription, item: Any) -> None:
        sub.pending.append(item)
        self._check_held(sub)

    def _check_held(self, sub: Subscription) -> None:
        if len(sub.pending) <= sub.buffer_limit:
            return
        if sub._replaying and not isinstance(sub, FiringSubscription):
            # Everything held is also in storage: forget it and replay further instead.
            sub.pending.clear()
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
        while sub.pending and sub.subscriber.can_write and not sub.dropped:
            item = sub.pending.popleft()
            if sub.is_new(item):
                sub.subscriber.write(sub.line_of(item))
                sub.sent(item)

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
        async for page in self._reader.pages(sub.last_sent_id, match=sub.query):
            for event in page:
                if not sub.subscriber.can_write:
                    await sub.subscriber.wait_writable()
                if sub.dropped:
                    return  # unsubscribed (or the connection closed) while we read storage
                sub.subscriber.write(sub.frame(event, dumps(event)))
                sub.last_sent_id = event.event_id

