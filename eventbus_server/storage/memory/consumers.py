"""Durable consumers for the `persist: false` backend (a mixin of `MemoryStorage`).

Durable within the process: leases, counts and dead letters live as long as
the bus does. Each method runs without an await, so it is one transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from eventbus_server.storage.base import EventQuery
from eventbus_server.storage.consumers import (
    ConsumerConfig,
    Delivery,
    Settle,
    StoredConsumer,
    TakeResult,
    expire,
    settle,
)

__all__ = ["MemoryConsumerStore"]


class MemoryConsumerStore:
    def __init__(self) -> None:
        self._consumers: dict[str, StoredConsumer] = {}
        self._deliveries: dict[str, dict[int, Delivery]] = {}

    async def put_consumer(self, name: str, config: ConsumerConfig, cursor: int, now_ms: int) -> bool:
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

    async def take_due(self, name: str, now_ms: int, limit: int) -> TakeResult:
        consumer = self._consumers.get(name)
        if consumer is None:
            return TakeResult()
        rows = self._deliveries[name]
        result = TakeResult()
        for row in expire(list(rows.values()), consumer.config, now_ms):
            rows[row.event_id] = row
            if row.state == "dead":
                result.died.append(row)
        room = min(limit, consumer.config.max_ack_pending - sum(1 for r in rows.values() if r.state == "leased"))
        due = sorted((r for r in rows.values() if r.state == "waiting" and r.due_at <= now_ms), key=_event_id)
        for row in due[: max(room, 0)]:
            leased = Delivery(row.event_id, "leased", row.deliveries + 1, now_ms + consumer.config.ack_wait_ms)
            rows[row.event_id] = leased
            result.leased.append(leased)
        consumer.redelivered += len(result.leased)
        if result.leased:
            consumer.last_delivered_id = max(consumer.last_delivered_id, *(r.event_id for r in result.leased))
        result.next_due_ms = min((r.due_at for r in rows.values() if r.state != "dead"), default=None)
        return result

    async def lease_new(
        self, name: str, expect_cursor: int, new_cursor: int, event_ids: Sequence[int], now_ms: int
    ) -> bool:
        consumer = self._consumers.get(name)
        if consumer is None or consumer.cursor != expect_cursor:
            return False
        rows = self._deliveries[name]
        leased = sum(1 for r in rows.values() if r.state == "leased")
        if leased + len(event_ids) > consumer.config.max_ack_pending:
            return False
        lease_until = now_ms + consumer.config.ack_wait_ms
        for event_id in event_ids:
            rows[event_id] = Delivery(event_id, "leased", 1, lease_until)
        consumer.cursor = new_cursor
        if event_ids:
            consumer.last_delivered_id = max(consumer.last_delivered_id, *event_ids)
        return True

    async def settle(
        self,
        name: str,
        event_ids: Sequence[int],
        action: Settle,
        now_ms: int,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> tuple[int, list[Delivery]]:
        consumer = self._consumers.get(name)
        if consumer is None:
            return 0, []
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
        dead = sorted((r for r in rows.values() if r.state == "dead" and r.event_id > after_id), key=_event_id)
        return [copy.copy(r) for r in dead[:limit]]

    async def redrive(self, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int) -> int:
        rows = self._deliveries.get(name, {})
        if event_ids is None:
            chosen = sorted((r for r in rows.values() if r.state == "dead"), key=_event_id)[:limit]
        else:
            chosen = [rows[i] for i in dict.fromkeys(event_ids) if i in rows and rows[i].state == "dead"]
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
