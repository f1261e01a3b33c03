"""Durable consumers for the `persist: false` backend (a mixin of `MemoryStorage`).

Durable within the process: leases, counts and dead letters live as long as
the bus does. Each method runs without an await, so it is one transaction.
"""

from __future__ import annotations

import copy
from bisect import bisect_left
from collections.abc import Sequence
from itertools import islice

from eventbus_core.event import Event
from eventbus_server.storage.base import EventQuery
from eventbus_server.storage.consumers import (
    ConsumerConfig,
    Delivery,
    FetchResult,
    Scan,
    Settle,
    StoredConsumer,
    expire,
    pick,
    redeliver,
    settle,
)
from eventbus_server.storage.reader import READ_PAGE

__all__ = ["MemoryConsumerStore"]


class MemoryConsumerStore:
    def __init__(self) -> None:
        self._consumers: dict[str, StoredConsumer] = {}
        self._deliveries: dict[str, dict[int, Delivery]] = {}

    async def put_consumer(
        self, name: str, config: ConsumerConfig, cursor: int, now_ms: int
    ) -> bool:
        old = self._consumers.get(name)
        if old is not None:
            old.config, old.updated_at = config, now_ms
            return False
        self._consumers[name] = StoredConsumer(name, config, cursor, now_ms, now_ms)
        self._deliveries[name] = {}
        return True

    async def load_consumer(self, name: str) -> StoredConsumer | None:
        consumer = self._consumers.get(name)
        return copy.copy(consumer) if consumer is not None else None

    async def list_consumers(self) -> list[StoredConsumer]:
        return [copy.copy(self._consumers[name]) for name in sorted(self._consumers)]

    async def delete_consumer(self, name: str) -> bool:
        self._deliveries.pop(name, None)
        return self._consumers.pop(name, None) is not None

    async def fetch_leases(
        self, name: str, now_ms: int, limit: int, scan: Scan
    ) -> FetchResult | None:
        consumer = self._consumers.get(name)
        if consumer is None:
            return None
        config, rows, result = consumer.config, self._deliveries[name], FetchResult()
        for row in expire(list(rows.values()), config, now_ms):
            rows[row.event_id] = row
            if row.state == "dead":
                result.died.append(row)
        room = min(
            limit, config.max_ack_pending - sum(1 for r in rows.values() if r.state == "leased")
        )
        budget = scan.max_bytes
        if room > 0:
            due = sorted(
                (r for r in rows.values() if r.state == "waiting" and r.due_at <= now_ms),
                key=_event_id,
            )[:room]
            events = {
                e.event_id: e for e in (self._event(r.event_id) for r in due) if e is not None
            }
            result.leased, dead, budget = redeliver(due, events, config, now_ms, budget)
            consumer.redelivered += len(result.leased)
            for row in [*dead, *(lease for _, lease in result.leased)]:
                rows[row.event_id] = row
            result.died += dead
        room -= len(result.leased)
        if room > 0 and budget > 0:
            ahead = islice(self._newer_than(consumer.cursor), scan.max_pages * READ_PAGE)  # type: ignore[attr-defined]
            page = (event for event in ahead if scan.query.matches(event))
            chosen, cursor, _, _ = pick(page, scan, room, budget, have_some=bool(result.leased))
            for event in chosen:
                lease = rows[event.event_id] = Delivery(
                    event.event_id, "leased", 1, now_ms + config.ack_wait_ms
                )
                result.leased.append((event, lease))
            if cursor is not None:
                consumer.cursor = cursor
        if result.leased:
            consumer.last_delivered_id = max(
                consumer.last_delivered_id, *(e.event_id for e, _ in result.leased)
            )
        result.next_due_ms = min(
            (r.due_at for r in rows.values() if r.state != "dead"), default=None
        )
        return result

    def _event(self, event_id: int) -> Event | None:
        ring = self._ring  # type: ignore[attr-defined]  # MemoryStorage's
        index = bisect_left(ring, event_id, key=_stored_id)
        return ring[index] if index < len(ring) and ring[index].event_id == event_id else None

    async def settle(
        self,
        name: str,
        event_ids: Sequence[int],
        action: Settle,
        now_ms: int,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> tuple[int, list[Delivery]] | None:
        consumer = self._consumers.get(name)
        if consumer is None:
            return None
        rows = self._deliveries[name]
        changed, died = 0, []
        for event_id in dict.fromkeys(event_ids):
            row = rows.get(event_id)
            if row is None or row.state != "leased":
                continue
            changed += 1
            after = settle(row, action, consumer.config, now_ms, delay_ms=delay_ms, reason=reason)
            if after is None:
                del rows[event_id]
                consumer.acked += 1
                continue
            rows[event_id] = after
            if after.state == "dead":
                died.append(after)
        return changed, died

    async def dead_letters(self, name: str, after_id: int, limit: int) -> list[Delivery]:
        rows = self._deliveries.get(name, {})
        dead = sorted(
            (r for r in rows.values() if r.state == "dead" and r.event_id > after_id), key=_event_id
        )
        return [copy.copy(r) for r in dead[:limit]]

    async def redrive(
        self, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
    ) -> int:
        rows = self._deliveries.get(name, {})
        if event_ids is None:
            chosen = sorted((r for r in rows.values() if r.state == "dead"), key=_event_id)[:limit]
        else:
            chosen = [
                rows[i] for i in dict.fromkeys(event_ids) if i in rows and rows[i].state == "dead"
            ]
        for row in chosen:
            rows[row.event_id] = Delivery(row.event_id, "waiting", 0, now_ms)
        return len(chosen)

    async def delivery_counts(self, name: str) -> dict[str, int]:
        counts = {"leased": 0, "waiting": 0, "dead": 0}
        for row in self._deliveries.get(name, {}).values():
            counts[row.state] += 1
        return counts

    async def count_after(self, query: EventQuery, since: int, cap: int) -> int:
        counted = 0
        for event in self._newer_than(since):  # type: ignore[attr-defined]  # MemoryStorage's ring
            if query.matches(event):
                counted += 1
                if counted >= cap:
                    break
        return counted


def _event_id(row: Delivery) -> int:
    return row.event_id


def _stored_id(event: Event) -> int:
    return event.event_id
