"""The client's scheduling methods (DESIGN §11): delayed events and recurring schedules.
A base of `EventBusClient`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventbus_client.calls import Calls, wire_event, without_none
from eventbus_core.envelope import EmitParams
from eventbus_core.results import (
    ScheduleCreated,
    ScheduledCursorInfo,
    ScheduledPage,
    ScheduledResult,
    ScheduleInfo,
)

__all__ = ["ScheduleCalls", "scheduled_result"]


def scheduled_result(result: Mapping[str, Any]) -> ScheduledResult:
    """A delayed emit's answer."""
    return ScheduledResult(
        result["schedule_id"], result["deliver_at"], result.get("duplicate", False)
    )


class ScheduleCalls(Calls):
    # -- delayed events --------------------------------------------------------

    async def schedule_many(
        self, events: Iterable[Mapping[str, Any] | EmitParams]
    ) -> list[ScheduledResult]:
        """Store several delayed events in one transaction (all or nothing); each needs
        `deliver_at` or `delay_ms`. Each is appended to the log when it falls due."""
        result = await self.call("emit_events", {"events": [wire_event(e) for e in events]})
        return [scheduled_result(item) for item in result.get("scheduled", [])]

    async def cancel_scheduled(self, schedule_id: str) -> None:
        """Drop a delayed event before it is due; NotFound once it is appended (or cancelled)."""
        await self.call("cancel_scheduled", {"schedule_id": schedule_id})

    async def list_scheduled(
        self, *, limit: int = 100, after: ScheduledCursorInfo | None = None
    ) -> ScheduledPage:
        """Pending delayed events, due first; pass `after=page["next"]` for the next page."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = dict(after)
        page: ScheduledPage = await self.call("list_scheduled", params)
        return page

    # -- schedules -------------------------------------------------------------

    async def create_schedule(
        self,
        schedule_id: str,
        event: Mapping[str, Any],
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        timezone: str | None = None,
        enabled: bool = True,
        replace: bool = False,
    ) -> ScheduleCreated:
        """Create a recurring schedule (DESIGN §11): `{id, created, next_tick}`.

        Args:
            schedule_id: 1-128 characters of letters, digits, '.', '_', '-'.
            event: what each tick appends: topic, payload, metadata, source_trn,
                target_trn, correlation_id (the tick adds `metadata.schedule`).
            cron: a 5-field cron expression (or @hourly, @daily, …) in `timezone`.
            every_ms: or a fixed interval (≥ 1000), ticking at its multiples since the epoch.
            timezone: an IANA name for `cron` (default UTC).
            enabled: create it switched off with False.
            replace: replace a schedule with the same id instead of AlreadyExists.
        """
        params = without_none(
            id=schedule_id, event=dict(event), cron=cron, every_ms=every_ms, timezone=timezone
        )
        result: ScheduleCreated = await self.call(
            "create_schedule", {**params, "enabled": enabled, "replace": replace}
        )
        return result

    async def list_schedules(self, *, limit: int | None = None) -> list[ScheduleInfo]:
        """Schedules in id order: every one (as many calls as the bus's pages take), or
        the first `limit` (1-1000, one call; a screen asks for a page, never them all)."""
        if limit is not None:
            return list((await self.call("list_schedules", {"limit": limit}))["schedules"])
        schedules: list[ScheduleInfo] = []
        after: str | None = None
        while True:
            page = await self.call("list_schedules", without_none(after_id=after))
            schedules += page["schedules"]
            after = page["next_after_id"]
            if after is None:
                return schedules

    async def get_schedule(self, schedule_id: str) -> ScheduleInfo:
        schedule: ScheduleInfo = await self.call("get_schedule", {"id": schedule_id})
        return schedule

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.call("delete_schedule", {"id": schedule_id})

    async def set_schedule_enabled(self, schedule_id: str, enabled: bool) -> ScheduleInfo:
        schedule: ScheduleInfo = await self.call(
            "set_schedule_enabled", {"id": schedule_id, "enabled": enabled}
        )
        return schedule
