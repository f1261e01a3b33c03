"""Scheduled events and schedules for the `persist: false` backend (DESIGN.md §11).

A mixin of `MemoryStorage`, like the rule store: `take_due_scheduled` picks what is due
and moves the schedules on, and the store appends it in the same step (one
event-loop turn, so nothing can come in between).
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence

from eventbus_core.errors import AlreadyExists, Overloaded
from eventbus_core.event import NewEvent
from eventbus_server.storage.base import ScheduledEvent, StoredSchedule

__all__ = ["MemoryScheduleStore"]


class MemoryScheduleStore:
    def __init__(self) -> None:
        self._scheduled: dict[str, ScheduledEvent] = {}
        #: (deliver_at, schedule_id) of every pending delayed event, sorted.
        self._due_order: list[tuple[int, str]] = []
        self._scheduled_keys: dict[str, str] = {}  # idempotency key -> schedule_id
        self._schedules: dict[str, StoredSchedule] = {}

    async def add_scheduled(
        self, items: Sequence[ScheduledEvent], *, max_pending: int
    ) -> list[ScheduledEvent]:
        answers: list[ScheduledEvent] = []
        fresh: dict[str, ScheduledEvent] = {}
        keys: dict[str, ScheduledEvent] = {}
        for item in items:
            key = item.idempotency_key
            known = None if key is None else keys.get(key) or self._pending_with(key)
            if known is not None:
                answers.append(known)
                continue
            if key is not None:
                keys[key] = item
            fresh[item.schedule_id] = item
            answers.append(item)
        if len(self._scheduled) + len(fresh) > max_pending:
            raise Overloaded(
                f"{len(self._scheduled)} delayed events are pending and {len(fresh)} more would pass"
                f" max_scheduled ({max_pending}); wait for some to be delivered, or cancel some"
            )
        for item in fresh.values():
            self._scheduled[item.schedule_id] = item
            insort(self._due_order, (item.deliver_at, item.schedule_id))
            if item.idempotency_key is not None:
                self._scheduled_keys[item.idempotency_key] = item.schedule_id
        return answers

    def _pending_with(self, key: str) -> ScheduledEvent | None:
        schedule_id = self._scheduled_keys.get(key)
        return None if schedule_id is None else self._scheduled.get(schedule_id)

    async def cancel_scheduled(self, schedule_id: str) -> bool:
        item = self._scheduled.pop(schedule_id, None)
        if item is None:
            return False
        self._unlist(item)
        return True

    def _unlist(self, item: ScheduledEvent) -> None:
        index = bisect_left(self._due_order, (item.deliver_at, item.schedule_id))
        del self._due_order[index]
        if item.idempotency_key is not None:
            self._scheduled_keys.pop(item.idempotency_key, None)

    async def list_scheduled(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None = None
    ) -> list[ScheduledEvent]:
        start = 0 if after is None else bisect_right(self._due_order, after)
        return [
            self._scheduled[schedule_id]
            for _, schedule_id in self._due_order[start : start + limit]
        ]

    async def put_schedule(
        self, schedule: StoredSchedule, *, replace: bool, max_schedules: int
    ) -> bool:
        old = self._schedules.get(schedule.id)
        if old is not None and not replace:
            raise AlreadyExists(
                f"schedule {schedule.id!r} already exists; pass replace: true to replace it"
            )
        if old is None and len(self._schedules) >= max_schedules:
            raise Overloaded(
                f"this bus has {len(self._schedules)} schedules, its max_schedules; delete one first"
            )
        stored = copy.deepcopy(schedule)
        if old is not None:
            stored.created_at, stored.last_tick, stored.ticks = (
                old.created_at,
                old.last_tick,
                old.ticks,
            )
        self._schedules[schedule.id] = stored
        return old is None

    async def get_schedule(self, schedule_id: str) -> StoredSchedule | None:
        schedule = self._schedules.get(schedule_id)
        return None if schedule is None else copy.deepcopy(schedule)

    async def list_schedules(self, *, after_id: str | None, limit: int) -> list[StoredSchedule]:
        ids = sorted(i for i in self._schedules if after_id is None or i > after_id)[:limit]
        return [copy.deepcopy(self._schedules[i]) for i in ids]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now_ms: int
    ) -> StoredSchedule | None:
        schedule = self._schedules.get(schedule_id)
        if schedule is not None and schedule.enabled != enabled:
            schedule.enabled = enabled
            schedule.next_tick = schedule.first_tick(now_ms)
            schedule.updated_at = now_ms
        return None if schedule is None else copy.deepcopy(schedule)

    async def next_due(self) -> int | None:
        ticks = [s.next_tick for s in self._schedules.values() if s.next_tick is not None]
        candidates = ticks + ([self._due_order[0][0]] if self._due_order else [])
        return min(candidates, default=None)

    def take_due_scheduled(self, now_ms: int, *, bus_id: str, limit: int) -> list[NewEvent]:
        """What is due at `now_ms`, in due order, taken off the pending set (the
        schedules moved on); the store appends it in the same step."""
        due: list[tuple[int, str, NewEvent]] = []
        while self._due_order and self._due_order[0][0] <= now_ms and len(due) < limit:
            _, schedule_id = self._due_order[0]
            item = self._scheduled.pop(schedule_id)
            self._unlist(item)
            due.append((item.deliver_at, schedule_id, item.due(now_ms)))
        ready = [
            s for s in self._schedules.values() if s.next_tick is not None and s.next_tick <= now_ms
        ]
        for schedule in sorted(ready, key=lambda s: (s.next_tick, s.id))[:limit]:
            event = schedule.tick(bus_id, now_ms)
            due.append((schedule.last_tick or now_ms, schedule.id, event))
        return [event for _, _, event in sorted(due, key=lambda item: (item[0], item[1]))]
