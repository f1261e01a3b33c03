"""Scheduled events of one bus (DESIGN.md §11): delayed emits and recurring
schedules, appended to the log when due.

    delayed emit ─▶ storage.add_scheduled (pending, durable) ─▶ wake
    schedule     ─▶ storage.put_schedule (next_tick)         ─▶ wake
    scheduler task: sleep until storage.next_due()
        ─▶ writer.run_operation(storage.append_due)   (one transaction: append,
           take off the pending set, move the schedules on; in the writer's order)
        ─▶ the feed, in id order, like every commit: fan-out, rules, consumers

Only the writer appends, so a due event never overtakes an emit committed
before it, and subscribers see the log in id order. The task sleeps until the
earliest due time; adding something due sooner wakes it. On shared storage
(several PostgreSQL nodes) it also looks every SHARED_POLL_S, to see what
other nodes scheduled; every node may try, and the claim inside
`append_due` lets exactly one of them append each item. At start it runs at
once, so what fell due while the bus was down is appended first thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
from collections.abc import Sequence

from eventbus_core.errors import EventBusError, NotFound, StorageUnavailable
from eventbus_core.event import now_ms
from eventbus_core.params import CreateScheduleParams
from eventbus_core.results import ScheduleCreated, ScheduledResult
from eventbus_server.storage.base import ScheduledEvent, Storage, StoredSchedule
from eventbus_server.writer import GroupCommitWriter

__all__ = ["DUE_PER_TURN", "SHARED_POLL_S", "Scheduler", "new_schedule_id"]

log = logging.getLogger("eventbus.scheduler")

#: At most this many delayed events, and this many schedules, per append (and
#: about 8 MiB): a backlog goes in as several commits, between clients' emits.
DUE_PER_TURN = 1000
#: How often a node of a shared bus looks for what other nodes scheduled.
SHARED_POLL_S = 1.0
#: After a failed turn (storage down), try again this much later.
RETRY_S = 1.0


def new_schedule_id() -> str:
    """A delayed event's id: random, so nodes need not agree on a counter."""
    return secrets.token_hex(12)


class Scheduler:
    """Stores what is scheduled and appends it when due; `start()`, `stop()`."""

    def __init__(
        self,
        storage: Storage,
        writer: GroupCommitWriter,
        *,
        bus_id: str,
        max_scheduled: int,
        max_schedules: int,
    ) -> None:
        self.storage = storage
        self.writer = writer
        self.bus_id = bus_id
        self.max_scheduled = max_scheduled
        self.max_schedules = max_schedules
        self.appended = 0  # events this node appended when due, for bus_info
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: When the task means to wake next (epoch ms); +inf while it does not know yet.
        self._wake_at = math.inf

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"scheduler:{self.bus_id}"
        )

    async def stop(self) -> None:
        """Stop appending; what is due from now on waits, stored, for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def due_at(self, when_ms: int | None) -> None:
        """Something falls due at `when_ms`: wake the task if that is sooner than planned."""
        if when_ms is not None and when_ms < self._wake_at:
            self._wake.set()

    # -- delayed events ------------------------------------------------------------

    async def add(self, items: Sequence[ScheduledEvent]) -> list[ScheduledResult]:
        """Store delayed events (all or none); a pending idempotency key answers as its event."""
        answers = await self.storage.add_scheduled(items, max_pending=self.max_scheduled)
        self.due_at(min(item.deliver_at for item in answers))
        return [
            ScheduledResult(
                answer.schedule_id,
                answer.deliver_at,
                duplicate=answer.schedule_id != item.schedule_id,
            )
            for item, answer in zip(items, answers, strict=True)
        ]

    async def cancel(self, schedule_id: str) -> None:
        if not await self.storage.cancel_scheduled(schedule_id):
            raise NotFound(
                f"no pending scheduled event {schedule_id!r} on bus {self.bus_id!r} (delivered or cancelled already?)"
            )

    async def pending(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None
    ) -> list[ScheduledEvent]:
        return await self.storage.list_scheduled(after=after, limit=limit, max_bytes=max_bytes)

    # -- schedules -----------------------------------------------------------------

    async def create(self, params: CreateScheduleParams) -> ScheduleCreated:
        now = now_ms()
        body = params.model_dump(include={"cron", "every_ms", "timezone"}, exclude_none=True)
        body["event"] = params.event.model_dump(exclude_none=True)
        schedule = StoredSchedule(
            params.id, body, params.enabled, None, created_at=now, updated_at=now
        )
        schedule.next_tick = schedule.first_tick(now)
        created = await self.storage.put_schedule(
            schedule, replace=params.replace, max_schedules=self.max_schedules
        )
        self.due_at(schedule.next_tick)
        return {"id": params.id, "created": created, "next_tick": schedule.next_tick}

    async def get(self, schedule_id: str) -> StoredSchedule:
        schedule = await self.storage.get_schedule(schedule_id)
        if schedule is None:
            raise self._unknown(schedule_id)
        return schedule

    async def list(self, *, after_id: str | None, limit: int) -> list[StoredSchedule]:
        return await self.storage.list_schedules(after_id=after_id, limit=limit)

    async def delete(self, schedule_id: str) -> None:
        if not await self.storage.delete_schedule(schedule_id):
            raise self._unknown(schedule_id)

    async def set_enabled(self, schedule_id: str, enabled: bool) -> StoredSchedule:
        schedule = await self.storage.set_schedule_enabled(schedule_id, enabled, now_ms())
        if schedule is None:
            raise self._unknown(schedule_id)
        self.due_at(schedule.next_tick)
        return schedule

    def _unknown(self, schedule_id: str) -> NotFound:
        return NotFound(f"no schedule {schedule_id!r} on bus {self.bus_id!r}")

    # -- the task ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._wake_at = math.inf  # anything scheduled meanwhile wakes the next wait at once
            try:
                await self._append_due()
                due = await self.storage.next_due()
            except StorageUnavailable as exc:
                log.warning(
                    "bus=%s scheduler cannot reach storage: %s; retrying in %.0fs",
                    self.bus_id,
                    exc,
                    RETRY_S,
                )
                due = now_ms() + int(RETRY_S * 1000)
            except EventBusError as exc:
                log.error("bus=%s scheduler turn failed: %s", self.bus_id, exc)
                due = now_ms() + int(RETRY_S * 1000)
            self._wake_at = due if due is not None else math.inf
            await self._sleep_until(due)

    async def _append_due(self) -> None:
        """Append what is due now, a bounded commit at a time, until nothing is."""
        while True:
            append = functools.partial(
                self.storage.append_due, now_ms(), bus_id=self.bus_id, limit=DUE_PER_TURN
            )
            stored = await self.writer.run_operation(append)
            if not stored:
                return
            self.appended += len(stored)
            log.debug(
                "bus=%s scheduler appended=%d last_event_id=%d",
                self.bus_id,
                len(stored),
                stored[-1].event_id,
            )

    async def _sleep_until(self, due: int | None) -> None:
        wait_s = math.inf if due is None else max(0.0, (due - now_ms()) / 1000)
        if self.storage.shared:
            wait_s = min(wait_s, SHARED_POLL_S)
        if wait_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if math.isinf(wait_s) else wait_s):
                await self._wake.wait()
