"""The Schedules tab: the bus's recurring schedules and its pending delayed events (DESIGN §11).

Read like the Consumers tab (ui/polled.py): at connect, when the tab is shown,
and every few seconds while it stays shown. Bounded: the first SCHEDULE_PAGE
schedules by id and the DELAYED_PAGE delayed events due first, never the
whole of either; past a page the titles say so. `space` switches the selected
schedule on or off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message

from eventbus_cli.output import cadence, compact, format_ts
from eventbus_cli.ui.lines import Column, ItemTable
from eventbus_cli.ui.model import due_in
from eventbus_cli.ui.polled import PolledTab
from eventbus_core.results import ScheduledEventInfo, ScheduleInfo

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

__all__ = [
    "ADD_HINT",
    "DELAYED_PAGE",
    "MISSING",
    "NO_DELAYED",
    "SCHEDULE_PAGE",
    "DelayedTable",
    "ScheduleBoard",
    "ScheduleTable",
    "SchedulesPane",
    "read_schedules",
    "schedules_tab",
]

#: Schedules read per poll (a bus holds up to `max_schedules`, 1,000 by default).
SCHEDULE_PAGE = 200
#: Delayed events read per poll, the next due (a bus holds up to 100,000).
DELAYED_PAGE = 100

#: What an empty schedule table says.
ADD_HINT = (
    "no schedules on this bus; add one with: eventbus schedules add ID --every 1m --topic TOPIC"
)
#: What an empty delayed-event table says.
NO_DELAYED = "no delayed events pending; emit one with: eventbus emit TOPIC --delay 10m"
#: What the tab says on a bus whose server predates schedules.
MISSING = "this bus has no schedules (its server predates them)"


@dataclass(frozen=True)
class ScheduleBoard:
    """One read of the tab: a page of schedules and a page of delayed events."""

    schedules: list[ScheduleInfo]  # by id
    more_schedules: bool  # past the page
    delayed: list[ScheduledEventInfo]  # due first
    more_delayed: bool


async def read_schedules(client: EventBusClient) -> ScheduleBoard:
    """Two bounded calls; one item past each page says whether there are more."""
    schedules = await client.list_schedules(limit=SCHEDULE_PAGE + 1)
    pending = await client.list_scheduled(limit=DELAYED_PAGE + 1)
    delayed = pending["scheduled"]
    return ScheduleBoard(
        schedules[:SCHEDULE_PAGE],
        len(schedules) > SCHEDULE_PAGE,
        delayed[:DELAYED_PAGE],
        len(delayed) > DELAYED_PAGE or pending["next"] is not None,
    )


def schedules_tab(pane: SchedulesPane) -> PolledTab[ScheduleBoard]:
    """The tab as the dashboard polls it (ui/polled.py)."""
    return PolledTab(
        "schedules", "schedules", ADD_HINT, MISSING, pane, lambda bus: bus.schedules, read_schedules
    )


def _when(timestamp_ms: int | None) -> str:
    """Date and time in UTC to the second."""
    return format_ts(timestamp_ms)[:19] if timestamp_ms is not None else "-"


class ScheduleTable(ItemTable[ScheduleInfo]):
    """One row per schedule, by id; `space` asks to switch the selected one on or off."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("schedule", cap=32),
        Column("on"),
        Column("cadence", cap=32),
        Column("next tick (UTC)"),
        Column("in"),
        Column("ticks"),
        Column("last tick (UTC)"),
        Column("zone", cap=24),
        Column("topic", fill=True),
    )
    BINDINGS: ClassVar[list[BindingType]] = [Binding("space", "switch", "On/off", show=False)]

    class ToggleAsked(Message):
        """`space` on a schedule: switch it off when on, on when off."""

        def __init__(self, table: ScheduleTable, schedule: ScheduleInfo) -> None:
            super().__init__()
            self.table = table
            self.schedule = schedule

        @property
        def control(self) -> ScheduleTable:
            return self.table

    def __init__(self, clock_ms: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock_ms = clock_ms

    def key(self, item: ScheduleInfo) -> str:
        return item["id"]

    def item_cells(self, item: ScheduleInfo) -> tuple[str, ...]:
        return (
            item["id"],
            "on" if item["enabled"] else "off",
            cadence(item, zone=False),
            _when(item["next_tick"]),
            due_in(item["next_tick"], self.clock_ms()),
            str(item["ticks"]),
            _when(item["last_tick"]),
            item["timezone"] if item["cron"] else "-",  # an interval counts from the epoch
            str(item["event"].get("topic", "")),
        )

    def cell_style(self, row: int, column: int) -> str:
        if column == 1:
            return "green" if self.rows[row][1] == "on" else "dim"
        return ""

    def action_switch(self) -> None:
        if self.selected is not None:
            self.post_message(self.ToggleAsked(self, self.selected))


class DelayedTable(ItemTable[ScheduledEventInfo]):
    """The pending delayed events, the next due first."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("due (UTC)"),
        Column("in"),
        Column("topic", cap=32),
        Column("id"),
        Column("payload", fill=True),
    )

    def __init__(self, clock_ms: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock_ms = clock_ms

    def key(self, item: ScheduledEventInfo) -> str:
        return item["schedule_id"]

    def item_cells(self, item: ScheduledEventInfo) -> tuple[str, ...]:
        event = item["event"]
        return (
            _when(item["deliver_at"]),
            due_in(item["deliver_at"], self.clock_ms()),
            str(event.get("topic", "")),
            item["schedule_id"],
            compact(event.get("payload"), 200),
        )


class SchedulesPane(Vertical):
    """The schedules over the delayed events, each under a title with its count."""

    DEFAULT_CSS = """
    SchedulesPane { height: 1fr; }
    SchedulesPane > ItemTable { border-top: solid $panel-lighten-2; border-title-color: $text-muted; }
    #schedule-table { height: 3fr; }
    #delayed-table { height: 2fr; }
    """

    def __init__(self, clock_ms: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.schedule_table = ScheduleTable(clock_ms, id="schedule-table")
        self.delayed_table = DelayedTable(clock_ms, id="delayed-table")

    def compose(self) -> ComposeResult:
        yield self.schedule_table
        yield self.delayed_table

    def show(self, board: ScheduleBoard | None, empty_text: str) -> None:
        """A read of the bus, or `empty_text` (why there is none) over an empty tab."""
        schedules, delayed = self.schedule_table, self.delayed_table
        if board is None:
            schedules.show(None, empty_text)
            delayed.show(None, "")
            schedules.border_title, delayed.border_title = "schedules", "delayed events"
            return
        schedules.show(board.schedules, empty_text)
        delayed.show(board.delayed, NO_DELAYED)
        count = len(board.schedules)
        schedules.border_title = (
            f"schedules: the first {count} by id (eventbus schedules ls lists them all)"
            if board.more_schedules
            else f"schedules: {count}"
        )
        pending = len(board.delayed)
        delayed.border_title = (
            f"delayed events: {pending}+ pending, the next {pending} due first"
            if board.more_delayed
            else f"delayed events: {pending} pending, the next due first"
        )
