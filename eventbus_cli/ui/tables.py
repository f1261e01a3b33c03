"""The dashboard's tables that change all the time, all `LineTable`s (lines.py):
the buses, the topics of the selected bus, the live event stream, the firings
(the Firings tab, and the recent ones on the first screen).

Follow mode, in the stream and the Firings tab: while the cursor is on the
newest row it stays there as rows arrive; move it up and it stays on its row.
Enter (or a click) posts `Selected` with the event or firing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message

from eventbus_cli.output import compact, format_ts
from eventbus_cli.ui.lines import Column, LineTable

__all__ = [
    "MAX_ROWS",
    "STATUS_STYLE",
    "BusTable",
    "EventStream",
    "FiringTable",
    "RecentFirings",
    "TopicTable",
]

#: Newest rows the stream and the firings hold (the bus view keeps more, for the detail screen).
MAX_ROWS = 300
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "pending": "cyan"}


def clock(timestamp_ms: int | None) -> str:
    """Time of day in UTC to the millisecond: the date is in the detail view."""
    return format_ts(timestamp_ms)[11:-1] if timestamp_ms is not None else "-"


class EventStream(LineTable):
    """Newest events at the bottom, a row cursor that follows them."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("id"),
        Column("time (UTC)"),
        Column("topic", cap=32),
        Column("source", cap=32),
        Column("target", cap=32),
        Column("payload", fill=True),
    )
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select", "Details", show=False)]

    class Selected(Message):
        """An event was chosen (enter or click) to be shown in full."""

        def __init__(self, stream: EventStream, event: dict[str, Any]) -> None:
            super().__init__()
            self.stream = stream
            self.event = event

        @property
        def control(self) -> EventStream:
            return self.stream

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: list[dict[str, Any]] = []
        self._cells: dict[int, tuple[str, ...]] = {}  # event_id -> its cell texts

    @property
    def row_count(self) -> int:
        return len(self.events)

    def cells(self, row: int) -> tuple[str, ...]:
        event = self.events[row]
        cells = self._cells.get(event["event_id"])
        if cells is None:
            cells = self._cells[event["event_id"]] = (
                str(event["event_id"]),
                clock(event.get("timestamp")),
                event["topic"],
                event.get("source_trn") or "-",
                event.get("target_trn") or "-",
                compact(event.get("payload"), 200),
            )
        return cells

    def striped(self, row: int) -> bool:
        return bool(
            self.events[row]["event_id"] % 2 == 1
        )  # by id: stripes stay put while rows scroll

    def add(self, new: Iterable[dict[str, Any]]) -> None:
        """Append newer events; keep the newest `MAX_ROWS`; the cursor follows or stays."""
        following = self.cursor >= len(self.events) - 1
        self.events.extend(new)
        dropped = max(0, len(self.events) - MAX_ROWS)
        if dropped:
            for event in self.events[:dropped]:
                self._cells.pop(event["event_id"], None)
            del self.events[:dropped]
        self.cursor = len(self.events) - 1 if following else max(0, self.cursor - dropped)
        self.rows_changed(reveal=following)

    def replace(self, events: Iterable[dict[str, Any]]) -> None:
        """Show these events instead (a new filter or bus), cursor on the newest."""
        self.events = list(events)[-MAX_ROWS:]
        self._cells = {}
        self.cursor = len(self.events) - 1
        self.rows_changed(reveal=True)

    def action_select(self) -> None:
        if 0 <= self.cursor < len(self.events):
            self.post_message(self.Selected(self, self.events[self.cursor]))

    def on_click(self, event: events.Click) -> None:
        row = self.row_at(event)
        if row is not None:
            self.move_to(row)
            self.action_select()


class TopicTable(LineTable):
    """The selected bus's topics, busiest first, redrawn once a second."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("topic", cap=40),
        Column("events"),
        Column("last"),
        Column("ev/s"),
        Column("last 30 s", fill=True, style="cyan"),
    )
    SHOW_CURSOR = False
    MIN_FILL = 6  # the names matter more than the sparkline

    def show(self, rows: list[tuple[str, ...]]) -> None:
        if rows != self.rows:
            self.rows = rows
            self.rows_changed()


class BusTable(LineTable):
    """Every bus with its connection state; moving the cursor picks the bus shown."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("bus", cap=24),
        Column("state", cap=40),
        Column("rules"),
        Column("ev/s"),
        Column("last id"),
        Column("storage", fill=True),
    )
    MIN_FILL = 10

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state_styles: list[str] = []

    def cell_style(self, row: int, column: int) -> str:
        return self._state_styles[row] if column == 1 else ""

    def show(self, rows: list[tuple[str, ...]], state_styles: list[str]) -> None:
        if (rows, state_styles) != (self.rows, self._state_styles):
            self.rows, self._state_styles = rows, state_styles
            if self.cursor < 0 and rows:
                self.cursor = 0
            self.rows_changed()

    def on_click(self, event: events.Click) -> None:
        row = self.row_at(event)
        if row is not None:
            self.move_to(row)


def took(firing: dict[str, Any]) -> str:
    return f"{firing['duration_ms']} ms" if firing.get("duration_ms") is not None else "-"


def outcome(firing: dict[str, Any]) -> str:
    """The error, or the result, on one line."""
    return firing.get("error") or compact(firing.get("result"), 200)


class FiringTable(LineTable):
    """Firings in firing-id order, newest at the bottom, one row per firing id.

    A firing that finishes again (retried) replaces its row. Like the stream,
    the cursor follows the newest row until it is moved up; `r` asks to retry
    the selected firing, enter to open its event.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("firing"),
        Column("time (UTC)"),
        Column("rule", cap=32),
        Column("event"),
        Column("status"),
        Column("tries"),
        Column("took"),
        Column("error / result", fill=True),
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", show=False),
        Binding("enter", "select", "Event", show=False),
    ]
    STATUS_COLUMN = 4

    class RetryAsked(Message):
        """`r` on a firing: run it again (only a failed one is retried)."""

        def __init__(self, table: FiringTable, firing: dict[str, Any]) -> None:
            super().__init__()
            self.table = table
            self.firing = firing

        @property
        def control(self) -> FiringTable:
            return self.table

    class Selected(Message):
        """Enter or a click on a firing: show the event it fired for."""

        def __init__(self, table: FiringTable, firing: dict[str, Any]) -> None:
            super().__init__()
            self.table = table
            self.firing = firing

        @property
        def control(self) -> FiringTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.firings: list[dict[str, Any]] = []

    def cell_style(self, row: int, column: int) -> str:
        return (
            STATUS_STYLE.get(self.firings[row]["status"], "")
            if column == self.STATUS_COLUMN
            else ""
        )

    def striped(self, row: int) -> bool:
        return (
            int(self.firings[row]["firing_id"]) % 2 == 1
        )  # by id: stripes stay put while rows scroll

    @property
    def selected(self) -> dict[str, Any] | None:
        return self.firings[self.cursor] if 0 <= self.cursor < len(self.firings) else None

    def show(self, firings: list[dict[str, Any]]) -> None:
        """These firings (by id), the newest `MAX_ROWS`; the cursor follows the newest or stays on its firing."""
        following = self.cursor >= len(self.firings) - 1
        held = self.selected["firing_id"] if not following and self.selected is not None else None
        self.firings = firings[-MAX_ROWS:]
        self.rows = [
            (
                str(f["firing_id"]),
                clock(f.get("started_at")),
                f["rule_id"],
                str(f["event_id"]),
                f["status"],
                str(f.get("attempts", "-")),
                took(f),
                outcome(f),
            )
            for f in self.firings
        ]
        if held is None:
            self.cursor = len(self.firings) - 1
        else:
            ids = [f["firing_id"] for f in self.firings]
            self.cursor = min(bisect_left(ids, held), len(ids) - 1)
        self.rows_changed(reveal=True)

    def clear(self) -> None:
        self.firings, self.rows, self.cursor = [], [], -1
        self.rows_changed()

    def action_retry(self) -> None:
        if self.selected is not None:
            self.post_message(self.RetryAsked(self, self.selected))

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self, self.selected))

    def on_click(self, event: events.Click) -> None:
        row = self.row_at(event)
        if row is not None:
            self.move_to(row)


class RecentFirings(LineTable):
    """The first screen's glance at rule firings: the newest first, by firing id."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("time"),
        Column("status"),
        Column("rule", cap=20),
        Column("firing"),
        Column("error / result", fill=True),
    )
    SHOW_CURSOR = False
    MIN_FILL = 8
    SHOWN = 50

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._statuses: list[str] = []

    def cell_style(self, row: int, column: int) -> str:
        return STATUS_STYLE.get(self._statuses[row], "") if column == 1 else ""

    def show(self, firings: list[dict[str, Any]]) -> None:
        newest = firings[::-1][: self.SHOWN]
        self.rows = [
            (
                clock(f.get("started_at"))[:8],
                f["status"],
                f["rule_id"],
                str(f["firing_id"]),
                outcome(f),
            )
            for f in newest
        ]
        self._statuses = [f["status"] for f in newest]
        self.rows_changed()
