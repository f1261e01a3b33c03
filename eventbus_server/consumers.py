"""Durable consumers of one bus: work shared by a pool of workers (DESIGN.md §10).

    fetch ─▶ storage.fetch_leases, one transaction: redeliveries first (expired
             leases and nacks that are due), then the log after the consumer's
             cursor through its filter, until `max` or `max_ack_pending`
          ─▶ messages {event, deliveries, lease_until}; none yet: wait for a
             matching commit, a redelivery falling due, or `wait_ms`
    ack / nack / extend / term ─▶ settle (leased rows only; any connection may)

Storage keeps every state and does every transition in one transaction (see
storage/consumers.py), so what is acked is never delivered again, also after
kill -9, and on PostgreSQL several nodes share one consumer. This module
holds only what is not state: the compiled filters, and the fetches waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from eventbus_core.errors import AlreadyExists, InvalidParams, NotFound, Overloaded
from eventbus_core.event import Event, now_ms
from eventbus_core.results import MAX_PENDING_COUNTED
from eventbus_server.rules.lang.limits import TooManyValues, check_rule_cost
from eventbus_server.rules.lang.operators import PatternError
from eventbus_server.rules.lang.pattern import EventPattern, compile_pattern
from eventbus_server.storage.base import EventQuery, Storage
from eventbus_server.storage.consumers import ConsumerConfig, Delivery, Scan, Settle, StoredConsumer
from eventbus_server.storage.reader import LogReader

__all__ = ["Consumers", "Message", "Start"]

log = logging.getLogger("eventbus.consumers")

#: `start` of a consumer: "new", "all", ("after_id", n) or ("from_ts", ms).
Start = str | tuple[str, int]
#: Log pages one fetch reads at most looking for matches before it answers.
SCAN_PAGES = 10
#: On storage other nodes share, a waiting fetch looks again this often (their acks,
#: nacks and redrives wake no one here).
SHARED_POLL_S = 1.0
#: Dead letters redriven by one call without ids.
REDRIVE_LIMIT = 10_000


@dataclass(slots=True)
class Message:
    """One leased event, as `fetch` answers it."""

    event: Event
    deliveries: int
    lease_until: int

    def wire(self) -> dict[str, Any]:
        return {"event": self.event, "deliveries": self.deliveries, "lease_until": self.lease_until}


@dataclass(slots=True)
class _Filter:
    query: EventQuery
    pattern: EventPattern | None

    def matches(self, event: Event) -> bool:
        if not self.query.matches(event):
            return False
        if self.pattern is None:
            return True
        try:
            return self.pattern.matches(event.rule_view())
        except TooManyValues:  # a field too large to test is no match, as for rules
            return False


class Consumers:
    def __init__(self, storage: Storage, *, bus_id: str, max_consumers: int) -> None:
        self.storage = storage
        self.reader = LogReader(storage)
        self.bus_id = bus_id
        self.max_consumers = max_consumers
        self._filters: dict[str, _Filter] = {}
        self._waiting: dict[str, set[asyncio.Event]] = {}

    # -- managing -------------------------------------------------------------

    async def create(
        self, name: str, config: ConsumerConfig, start: Start, *, replace: bool
    ) -> bool:
        """Create a consumer (or change one, with `replace`); True when it is new."""
        compiled = _compile(config)
        existing = await self.storage.load_consumer(name)
        if existing is not None and not replace:
            raise AlreadyExists(
                f"consumer {name!r} already exists on bus {self.bus_id!r} (pass replace: true to change it)"
            )
        if existing is None and len(await self.storage.list_consumers()) >= self.max_consumers:
            raise Overloaded(
                f"bus {self.bus_id!r} holds {self.max_consumers} consumers, its max_consumers; delete one first"
            )
        created = await self.storage.put_consumer(
            name, config, await self._start_cursor(start), now_ms()
        )
        self._filters[name] = compiled
        self._wake(name)  # a changed filter may match what fetches wait for
        return created

    async def _start_cursor(self, start: Start) -> int:
        if isinstance(start, str):
            # From storage, not the bus's counters: an emit is acknowledged before its
            # events reach them, and "new" must not hand out what the caller emitted before.
            return await self.storage.last_event_id() if start == "new" else 0  # or "all"
        kind, value = start
        if kind == "after_id":
            return int(value)
        first = await self.storage.query(EventQuery(from_ts=int(value), limit=1))
        return first[0].event_id - 1 if first else await self.storage.last_event_id()

    async def get(self, name: str) -> dict[str, Any]:
        return await self._info(await self._load(name))

    async def list_all(self) -> list[dict[str, Any]]:
        return [await self._info(consumer) for consumer in await self.storage.list_consumers()]

    async def delete(self, name: str) -> None:
        if not await self.storage.delete_consumer(name):
            raise self._not_found(name)
        self._filters.pop(name, None)
        self._wake(name)

    async def _info(self, consumer: StoredConsumer) -> dict[str, Any]:
        counts = await self.storage.delivery_counts(consumer.name)
        pending = await self.storage.count_after(
            self._filter(consumer).query, consumer.cursor, MAX_PENDING_COUNTED
        )
        return {
            "name": consumer.name,
            **consumer.config.wire(),
            "created_at": consumer.created_at,
            "updated_at": consumer.updated_at,
            "stats": {
                "pending": pending,
                "ack_pending": counts["leased"],
                "waiting": counts["waiting"],
                "acked": consumer.acked,
                "redelivered": consumer.redelivered,
                "dead": counts["dead"],
                "last_delivered_id": consumer.last_delivered_id,
                "cursor": consumer.cursor,
            },
        }

    # -- fetching -------------------------------------------------------------

    async def fetch(
        self,
        name: str,
        *,
        max_messages: int,
        wait_ms: int,
        max_bytes: int,
        hold: Callable[[], AbstractAsyncContextManager[None]],
        abandoned: asyncio.Event | None = None,
    ) -> list[Message]:
        """Lease up to `max_messages`, waiting up to `wait_ms` for the first.

        `hold` is held while leased events are read and shaped (one page in
        memory per connection), but not while the fetch waits. Once `abandoned`
        is set (the client half-closed or went), the fetch stops waiting: what
        it would lease then would only wait out its lease for nobody.
        """
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            if abandoned is not None and abandoned.is_set():
                return []
            woken = asyncio.Event()
            waiting = self._waiting.setdefault(name, set())
            waiting.add(woken)  # before looking: a commit meanwhile wakes this fetch
            try:
                async with hold():
                    messages, next_due_ms = await self._take(name, max_messages, max_bytes)
                left_s = deadline - time.monotonic()
                if messages or left_s <= 0:
                    return messages
                if next_due_ms is not None:
                    left_s = min(left_s, max(0.0, (next_due_ms - now_ms()) / 1000))
                if self.storage.shared:
                    left_s = min(left_s, SHARED_POLL_S)
                await _first_of(woken, abandoned, timeout_s=left_s)
            finally:
                waiting.discard(woken)
                if not waiting:
                    self._waiting.pop(name, None)

    async def _take(
        self, name: str, max_messages: int, max_bytes: int
    ) -> tuple[list[Message], int | None]:
        """One fetch in one storage transaction; the messages and when the next
        redelivery is due."""
        matcher = self._filters.get(name)
        if matcher is None:  # first use on this node (after a start, or made by another node)
            matcher = self._filter(await self._load(name))
        scan = Scan(
            matcher.query,
            matcher.matches if matcher.pattern is not None else None,
            max_bytes,
            SCAN_PAGES,
        )
        result = await self.storage.fetch_leases(name, now_ms(), max_messages, scan)
        if result is None:
            self._filters.pop(name, None)
            raise self._not_found(name)
        self._log_dead(name, result.died)
        return [
            Message(event, lease.deliveries, lease.due_at) for event, lease in result.leased
        ], result.next_due_ms

    # -- settling -------------------------------------------------------------

    async def settle(
        self,
        name: str,
        event_ids: Sequence[int],
        action: Settle,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> int:
        """ack / nack / extend / term the leased ones of `event_ids`; how many changed."""
        settled = await self.storage.settle(
            name, event_ids, action, now_ms(), delay_ms=delay_ms, reason=reason
        )
        if settled is None:
            raise self._not_found(name)
        count, died = settled
        self._log_dead(name, died)
        if action == "nack":
            self._wake(name)  # due again, perhaps at once
        return count

    async def dead_letters(self, name: str, *, after_id: int, limit: int) -> list[dict[str, Any]]:
        await self._load(name)
        dead = []
        for delivery in await self.storage.dead_letters(name, after_id, limit):
            event = await self.reader.event(delivery.event_id)
            dead.append(
                {
                    "event_id": delivery.event_id,
                    "event": event,  # None once retention pruned it
                    "deliveries": delivery.deliveries,
                    "reason": delivery.reason,
                    "dead_at": delivery.due_at,
                }
            )
        return dead

    async def redrive(self, name: str, event_ids: Sequence[int] | None) -> int:
        """Dead letters back to the consumer, due at once with deliveries reset."""
        await self._load(name)
        count = await self.storage.redrive(name, event_ids, now_ms(), REDRIVE_LIMIT)
        if count:
            log.info("bus=%s consumer=%s redriven=%d", self.bus_id, name, count)
            self._wake(name)
        return count

    # -- new events -------------------------------------------------------------

    def on_commit(self, events: list[Event]) -> None:
        """Committed events: wake the fetches of consumers that one of them matches."""
        for name in list(self._waiting):
            matcher = self._filters.get(name)
            if matcher is None or any(matcher.matches(event) for event in events):
                self._wake(name)

    def _wake(self, name: str) -> None:
        for woken in self._waiting.get(name, ()):
            woken.set()

    # -- helpers ----------------------------------------------------------------

    async def _load(self, name: str) -> StoredConsumer:
        consumer = await self.storage.load_consumer(name)
        if consumer is None:
            self._filters.pop(name, None)
            raise self._not_found(name)
        return consumer

    def _filter(self, consumer: StoredConsumer) -> _Filter:
        """The compiled filter of the consumer as stored (another node may have changed it)."""
        cached = self._filters.get(consumer.name)
        if cached is None or _config_of(cached) != (
            consumer.config.topic,
            consumer.config.source_trn,
            consumer.config.target_trn,
            consumer.config.pattern,
        ):
            cached = self._filters[consumer.name] = _compile(consumer.config)
        return cached

    def _not_found(self, name: str) -> NotFound:
        return NotFound(f"no consumer {name!r} on bus {self.bus_id!r}")

    def _log_dead(self, name: str, died: list[Delivery]) -> None:
        for delivery in died:
            log.warning(
                "bus=%s consumer=%s event=%d dead letter after %d deliveries: %s",
                self.bus_id,
                name,
                delivery.event_id,
                delivery.deliveries,
                delivery.reason,
            )


async def _first_of(
    woken: asyncio.Event, abandoned: asyncio.Event | None, *, timeout_s: float
) -> None:
    """Return when `woken` or `abandoned` is set, or after `timeout_s`."""
    waits = {asyncio.ensure_future(woken.wait())}
    if abandoned is not None:
        waits.add(asyncio.ensure_future(abandoned.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


def _compile(config: ConsumerConfig) -> _Filter:
    query = EventQuery(
        topic=config.topic, source_trn=config.source_trn, target_trn=config.target_trn
    )
    pattern = None
    if config.pattern is not None:
        try:
            check_rule_cost(config.pattern, {}, None, "pattern")  # the caps a rule's pattern has
            pattern = compile_pattern(config.pattern)
        except PatternError as exc:
            raise InvalidParams(
                f"invalid consumer pattern: {exc}", [{"loc": exc.path, "msg": exc.reason}]
            ) from None
    return _Filter(query, pattern)


def _config_of(matcher: _Filter) -> tuple[str, str | None, str | None, dict[str, Any] | None]:
    query = matcher.query
    return (
        query.topic,
        query.source_trn,
        query.target_trn,
        matcher.pattern.source if matcher.pattern else None,
    )
