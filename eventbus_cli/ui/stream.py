"""The live event stream: a cheap table of the newest events, with a cursor.

A DataTable re-measures and re-renders every cell through Rich whenever rows
change; under a flood of thousands of events a second that repaint took most
of the dashboard's time and stalled it for 100-400 ms. This widget uses
Textual's line API instead: it keeps the newest `MAX_ROWS` events and renders
only the lines on screen, each as a few plain segments, so a redraw costs the
same however busy the bus is.

Follow mode: while the cursor is on the newest row it stays there as events
arrive; move it up and it stays on its event. Enter (or a click) posts
`EventStream.Selected` with the event.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..output import compact, format_ts

__all__ = ["MAX_ROWS", "EventStream"]

#: Newest events the stream holds (older ones stay in the bus view for the detail screen).
MAX_ROWS = 300
#: Two spaces between columns.
GAP = 2
#: Widest any of topic, source and target gets before the payload gets the rest.
CAP = 32
#: Narrowest a shrunk column gets.
MIN_WIDTH = 8
#: Below this width the time column shows the time of day only.
WIDE = 130
HEADERS = ("id", "time (UTC)", "topic", "source", "target", "payload")


def _clock(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class EventStream(ScrollView, can_focus=True):
    """Newest events at the bottom, a pinned header, a row cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "event-stream--header",
        "event-stream--even-row",
        "event-stream--cursor",
    }
    DEFAULT_CSS = """
    EventStream {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        & > .event-stream--header { text-style: bold; background: $panel; color: $foreground; }
        & > .event-stream--even-row { background: $surface-lighten-1 50%; }
        & > .event-stream--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .event-stream--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1_000_000)", "First", show=False),
        Binding("end", "move(1_000_000)", "Newest", show=False),
        Binding("enter", "select", "Details", show=False),
    ]

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
        self.cursor = -1  # index into `events`; -1 while empty
        self._cells: dict[int, tuple[str, ...]] = {}  # event_id -> its cell texts
        self._version = 0  # bumped when the rows change, so widths are measured again
        self._layout: tuple[int, int, list[int]] = (-1, -1, [])  # (width, version, widths)

    # -- content ------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.events)

    def column(self, index: int) -> list[str]:
        """The text of one column, oldest row first (what a reader of the screen sees)."""
        return [self._cells_of(event)[index] for event in self.events]

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
        self._changed(reveal=following)

    def replace(self, events: Iterable[dict[str, Any]]) -> None:
        """Show these events instead (a new filter or bus), cursor on the newest."""
        self.events = list(events)[-MAX_ROWS:]
        self._cells = {}
        self.cursor = len(self.events) - 1
        self._changed(reveal=True)

    def _changed(self, *, reveal: bool) -> None:
        self._version += 1
        self.virtual_size = Size(1, len(self.events) + 1)  # + the header line
        if reveal:
            self._reveal()
        self.refresh()

    def _cells_of(self, event: dict[str, Any]) -> tuple[str, ...]:
        cells = self._cells.get(event["event_id"])
        if cells is None:
            cells = self._cells[event["event_id"]] = (
                str(event["event_id"]),
                format_ts(event.get("timestamp")),
                event["topic"],
                event.get("source_trn") or "-",
                event.get("target_trn") or "-",
                compact(event.get("payload"), 200),
            )
        return cells

    # -- cursor and scrolling -----------------------------------------------------------

    @property
    def _rows_on_screen(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _reveal(self) -> None:
        """Scroll so that the cursor row is on screen."""
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._rows_on_screen:
            self.scroll_to(y=self.cursor - self._rows_on_screen + 1, animate=False, immediate=True)

    def _move_to(self, row: int) -> None:
        if not self.events:
            return
        self.cursor = min(max(row, 0), len(self.events) - 1)
        self._reveal()
        self.refresh()

    def action_move(self, rows: int) -> None:
        self._move_to(self.cursor + rows)

    def action_page(self, pages: int) -> None:
        self._move_to(self.cursor + pages * self._rows_on_screen)

    def action_select(self) -> None:
        if 0 <= self.cursor < len(self.events):
            self.post_message(self.Selected(self, self.events[self.cursor]))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return  # the header
        row = round(self.scroll_y) + event.y - 1
        if row < len(self.events):
            self._move_to(row)
            self.action_select()

    def on_resize(self) -> None:
        self._changed(reveal=True)

    # -- drawing ------------------------------------------------------------------------

    def _widths(self, width: int) -> list[int]:
        """Column widths for this screen width: natural, capped, shrunk to fit a payload."""
        known_width, version, widths = self._layout
        if (known_width, version) != (width, self._version):
            widths = self._measure(width)
            self._layout = (width, self._version, widths)
        return widths

    def _measure(self, width: int) -> list[int]:
        rows = [self._cells_of(event) for event in self.events]
        natural = [max([len(HEADERS[i]), *(cell_len(r[i]) for r in rows)]) for i in range(5)]
        natural[1] = 24 if width >= WIDE else 12
        natural[2:5] = [min(w, CAP) for w in natural[2:5]]
        room = width - sum(natural) - GAP * 6
        while room < 16 and max(natural[2:5]) > MIN_WIDTH:
            widest = max(range(2, 5), key=lambda i: natural[i])
            natural[widest] -= 1
            room += 1
        return [*natural, max(room, 0)]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths(width)
        if y == 0:
            return self._strip(HEADERS, widths, width, self.get_component_rich_style("event-stream--header"))
        row = round(self.scroll_y) + y - 1
        if row >= len(self.events):
            return Strip.blank(width, self.rich_style)
        cells = self._cells_of(self.events[row])
        if widths[1] != 24:
            cells = (cells[0], _clock(self.events[row].get("timestamp")), *cells[2:])
        style = self.rich_style
        if row == self.cursor:
            style += self.get_component_rich_style("event-stream--cursor")
        elif self.events[row]["event_id"] % 2:  # by id: stripes stay put while rows scroll
            style += self.get_component_rich_style("event-stream--even-row")
        return self._strip(cells, widths, width, style)

    def _strip(self, cells: tuple[str, ...], widths: list[int], width: int, style: Style) -> Strip:
        segments: list[Segment] = []
        for cell, cell_width in zip(cells, widths, strict=True):
            if cell_width <= 0:
                continue
            text = cell if cell_len(cell) <= cell_width else set_cell_size(cell, cell_width - 1) + "…"
            segments.append(Segment(" " + set_cell_size(text, cell_width) + " " * (GAP - 1), style))
        line = Strip(segments)
        return line.adjust_cell_length(width, style).crop(0, width)
