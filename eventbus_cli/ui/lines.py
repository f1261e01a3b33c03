"""A cheap table for the busy panels: a pinned header, rows of text, an optional cursor.

A DataTable re-measures and re-renders every cell through Rich whenever rows
change, and keeps what it rendered in caches of up to 10,000 cells. Under a
flood of thousands of events a second that repaint took most of the
dashboard's time, and the caches filled the heap with ~100,000 objects that
every full garbage collection walked (100-170 ms pauses). This widget uses
Textual's line API instead: it renders only the lines on screen, each as a
few plain segments, and caches nothing but the column widths.

Subclasses fill `rows` (or make cells lazily: `row_count`, `cells`) and call
`rows_changed`; see tables.py. `ItemTable` is one for a listing read from the
bus (consumers, schedules): a row per item, the cursor held on its item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["Column", "ItemTable", "LineTable"]

ItemT = TypeVar("ItemT")

#: Two spaces between columns.
GAP = 2
#: Narrowest a capped column gets when the screen is too narrow for all of them.
MIN_WIDTH = 12


@dataclass(frozen=True)
class Column:
    header: str
    #: Widest it gets; None: as wide as its widest cell, and never shrunk.
    cap: int | None = None
    #: Takes the width that is left (the last column).
    fill: bool = False
    #: A Rich style for its cells ("cyan"); the row's style still applies under it.
    style: str = ""


class LineTable(ScrollView, can_focus=True):
    """Rows of cell texts under a pinned header; only the lines on screen are drawn."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    #: Whether a row cursor is shown and moved (else the keys scroll).
    SHOW_CURSOR: ClassVar[bool] = True
    #: What the filling column keeps at least before capped columns shrink.
    MIN_FILL: ClassVar[int] = 16

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "line-table--header",
        "line-table--even-row",
        "line-table--cursor",
    }
    DEFAULT_CSS = """
    LineTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        & > .line-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .line-table--even-row { background: $surface-lighten-1 50%; }
        & > .line-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .line-table--cursor {
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
        Binding("end", "move(1_000_000)", "Last", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cursor = -1  # a row index; -1 while there are no rows
        self.rows: list[tuple[str, ...]] = []  # the cell texts, unless a subclass makes them lazily
        self._version = 0  # bumped when the rows change, so widths are measured again
        self._layout: tuple[int, int, list[int]] = (-1, -1, [])  # (width, version, widths)
        self._styles: dict[str, Style] = {}  # parsed once each
        #: Said on the first line while there are no rows ("" says nothing).
        self.empty_text = ""

    # -- what subclasses may change -------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def cells(self, row: int) -> tuple[str, ...]:
        """The texts of one row, a cell per column (by default from `rows`)."""
        return self.rows[row]

    def striped(self, row: int) -> bool:
        return row % 2 == 1

    def cell_style(self, row: int, column: int) -> str:
        """A Rich style for one cell (a status in red); "" for the column's own."""
        return ""

    # -- content ---------------------------------------------------------------------

    def column(self, index: int) -> list[str]:
        """The text of one column, top row first (what a reader of the screen sees)."""
        return [self.cells(row)[index] for row in range(self.row_count)]

    def rows_changed(self, *, reveal: bool = False) -> None:
        """Call after the rows changed; `reveal` scrolls the cursor into view."""
        self._version += 1
        self.virtual_size = Size(1, self.row_count + 1)  # + the header line
        if reveal:
            self._reveal()
            # The new size counts only from the next layout: until then a scroll past the
            # old end is cut short (a burst on an empty stream stayed on its first rows).
            self.call_after_refresh(self._reveal)
        self.refresh()

    # -- cursor and scrolling ------------------------------------------------------------

    @property
    def _rows_on_screen(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _reveal(self) -> None:
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._rows_on_screen:
            self.scroll_to(y=self.cursor - self._rows_on_screen + 1, animate=False, immediate=True)

    class Highlighted(Message):
        """The cursor moved to another row (by key, click or `move_to`)."""

        def __init__(self, table: LineTable, row: int) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> LineTable:
            return self.table

    def move_to(self, row: int) -> None:
        if not self.row_count:
            return
        before, self.cursor = self.cursor, min(max(row, 0), self.row_count - 1)
        self._reveal()
        self.refresh()
        if self.cursor != before:
            self.post_message(self.Highlighted(self, self.cursor))

    def action_move(self, rows: int) -> None:
        if self.SHOW_CURSOR:
            self.move_to(self.cursor + rows)
        else:
            self.scroll_to(y=self.scroll_y + rows, animate=False, immediate=True)

    def action_page(self, pages: int) -> None:
        self.action_move(pages * self._rows_on_screen)

    def row_at(self, event: events.MouseEvent) -> int | None:
        """The row under the mouse, or None (the header, or below the last row)."""
        if event.y < 1:
            return None
        row = round(self.scroll_y) + event.y - 1
        return row if row < self.row_count else None

    def on_resize(self) -> None:
        self.rows_changed(reveal=self.SHOW_CURSOR)

    # -- drawing -------------------------------------------------------------------------

    def _widths(self, width: int) -> list[int]:
        known_width, version, widths = self._layout
        if (known_width, version) != (width, self._version):
            widths = self._measure(width)
            self._layout = (width, self._version, widths)
        return widths

    def _measure(self, width: int) -> list[int]:
        """Natural widths, capped; capped columns shrink until the filling one has room."""
        rows = [self.cells(row) for row in range(self.row_count)]
        widths = [
            min(
                max([cell_len(column.header), *(cell_len(r[i]) for r in rows)]), column.cap or width
            )
            for i, column in enumerate(self.COLUMNS)
        ]
        filling = [i for i, column in enumerate(self.COLUMNS) if column.fill]
        shrinkable = [
            i for i, column in enumerate(self.COLUMNS) if column.cap is not None and not column.fill
        ]
        fixed = sum(w for i, w in enumerate(widths) if i not in filling)
        room = width - fixed - GAP * len(widths)
        while (
            filling
            and room < self.MIN_FILL
            and shrinkable
            and max(widths[i] for i in shrinkable) > MIN_WIDTH
        ):
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
            room += 1
        for i in filling:
            widths[i] = max(room, 0)
        return widths

    def _style_of(self, row: int, column: int) -> Style:
        name = self.cell_style(row, column) or self.COLUMNS[column].style
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = Style.parse(name) if name else Style()
        return style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths(width)
        if y == 0:
            header = tuple(column.header for column in self.COLUMNS)
            return self._strip(
                header, widths, width, self.get_component_rich_style("line-table--header"), None
            )
        row = round(self.scroll_y) + y - 1
        if row >= self.row_count:
            if row == 0 and self.empty_text:
                return self._strip(
                    (self.empty_text,),
                    [width - GAP],
                    width,
                    self.rich_style + Style(dim=True),
                    None,
                )
            return Strip.blank(width, self.rich_style)
        style = self.rich_style
        if self.SHOW_CURSOR and row == self.cursor:
            style += self.get_component_rich_style("line-table--cursor")
            return self._strip(self.cells(row), widths, width, style, None)
        if self.striped(row):
            style += self.get_component_rich_style("line-table--even-row")
        return self._strip(self.cells(row), widths, width, style, row)

    def _strip(
        self, cells: tuple[str, ...], widths: list[int], width: int, style: Style, row: int | None
    ) -> Strip:
        """One line; `row` None: the header or the cursor row, drawn without cell styles."""
        segments: list[Segment] = []
        used = 0
        for column, (cell, cell_width) in enumerate(zip(cells, widths, strict=True)):
            if cell_width <= 0:
                continue
            text = (
                cell if cell_len(cell) <= cell_width else set_cell_size(cell, cell_width - 1) + "…"
            )
            text = " " + set_cell_size(text, cell_width) + " " * (GAP - 1)
            segments.append(
                Segment(text, style + self._style_of(row, column) if row is not None else style)
            )
            used += cell_width + GAP
        if used < width:
            segments.append(Segment(" " * (width - used), style))
        # One Strip per line (each carries seven small caches): cropped only when too narrow.
        line = Strip(segments, max(used, width))
        return line if used <= width else line.crop(0, width)


class ItemTable(LineTable, Generic[ItemT]):
    """One row per item of a listing (a consumer, a schedule), keyed, in the order given;
    the cursor stays on its item as the listing is read again."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: Sequence[ItemT] = []

    def key(self, item: ItemT) -> str:
        """What identifies an item from one read to the next (its name, its id)."""
        raise NotImplementedError

    def item_cells(self, item: ItemT) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def selected(self) -> ItemT | None:
        return self.items[self.cursor] if 0 <= self.cursor < len(self.items) else None

    def show(self, items: Sequence[ItemT] | None, empty_text: str) -> None:
        """These items, or `empty_text` when there are none; redrawn only when they changed."""
        items = items or []
        rows = [self.item_cells(item) for item in items]
        if rows == self.rows and empty_text == self.empty_text:
            self.items = items  # the same cells; keep the newest read for the actions
            return
        held = self.key(self.selected) if self.selected is not None else None
        self.items, self.rows, self.empty_text = items, rows, empty_text
        keys = [self.key(item) for item in items]
        if held in keys:
            self.cursor = keys.index(held)
        else:
            self.cursor = min(max(self.cursor, 0), len(keys) - 1)
        self.rows_changed(reveal=True)

    def on_click(self, event: events.Click) -> None:
        row = self.row_at(event)
        if row is not None:
            self.move_to(row)
