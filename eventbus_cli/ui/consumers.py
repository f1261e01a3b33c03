"""The Consumers tab: the bus's durable consumers (DESIGN §10) by name, with their stats.

Read with `list_consumers` every few seconds while the tab is shown (a
consumer's `pending` is a count the bus makes for each call, so a hidden tab
costs the bus nothing). `r` asks to redrive the selected consumer's dead
letters; on a bus without consumers the table says how to add one.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message

from eventbus_cli.output import compact
from eventbus_cli.ui.lines import Column, LineTable
from eventbus_core.results import MAX_PENDING_COUNTED, ConsumerInfo

__all__ = ["ADD_HINT", "ConsumerTable", "consumer_filter"]

#: What an empty Consumers tab says.
ADD_HINT = "no consumers on this bus; add one with: eventbus consumers add NAME --topic 'jobs.>'"


def consumer_filter(consumer: ConsumerInfo) -> str:
    """Which events it takes, on one line: `jobs.> source:trn:user:* pattern {…}`."""
    parts = [consumer["topic"]]
    if consumer.get("source_trn"):
        parts.append(f"source:{consumer['source_trn']}")
    if consumer.get("target_trn"):
        parts.append(f"target:{consumer['target_trn']}")
    if consumer.get("pattern"):
        parts.append(f"pattern {compact(consumer['pattern'], 120)}")
    return " ".join(parts)


def _pending(count: int) -> str:
    return (
        f"{count}+" if count >= MAX_PENDING_COUNTED else str(count)
    )  # the bus stops counting there


class ConsumerTable(LineTable):
    """One row per consumer, by name; the cursor stays on its consumer as the stats change."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("consumer", cap=32),
        Column("pending"),
        Column("ack pending"),
        Column("waiting"),
        Column("redelivered"),
        Column("dead"),
        Column("acked"),
        Column("last delivered"),
        Column("filter", fill=True),
    )
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "redrive", "Redrive", show=False)]
    #: Cells drawn in a colour when their count is not zero.
    ALERTS: ClassVar[dict[int, str]] = {2: "cyan", 3: "yellow", 5: "bold red"}

    class RedriveAsked(Message):
        """`r` on a consumer: its dead letters back to it (only when it has some)."""

        def __init__(self, table: ConsumerTable, consumer: ConsumerInfo) -> None:
            super().__init__()
            self.table = table
            self.consumer = consumer

        @property
        def control(self) -> ConsumerTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.consumers: list[ConsumerInfo] = []

    @property
    def selected(self) -> ConsumerInfo | None:
        return self.consumers[self.cursor] if 0 <= self.cursor < len(self.consumers) else None

    def cell_style(self, row: int, column: int) -> str:
        alert = self.ALERTS.get(column)
        return alert if alert and self.rows[row][column] != "0" else ""

    def show(self, consumers: list[ConsumerInfo] | None, empty_text: str) -> None:
        """These consumers (sorted by name), or `empty_text` when there are none."""
        consumers = consumers or []
        rows = [_cells(consumer) for consumer in consumers]
        if rows == self.rows and empty_text == self.empty_text:
            return
        held = self.selected["name"] if self.selected is not None else None
        self.consumers, self.rows, self.empty_text = consumers, rows, empty_text
        names = [consumer["name"] for consumer in consumers]
        if held in names:
            self.cursor = names.index(held)
        else:
            self.cursor = min(max(self.cursor, 0), len(names) - 1)
        self.rows_changed(reveal=True)

    def action_redrive(self) -> None:
        if self.selected is not None:
            self.post_message(self.RedriveAsked(self, self.selected))

    def on_click(self, event: events.Click) -> None:
        row = self.row_at(event)
        if row is not None:
            self.move_to(row)


def _cells(consumer: ConsumerInfo) -> tuple[str, ...]:
    stats = consumer["stats"]
    return (
        consumer["name"],
        _pending(stats["pending"]),
        str(stats["ack_pending"]),
        str(stats["waiting"]),
        str(stats["redelivered"]),
        str(stats["dead"]),
        str(stats["acked"]),
        str(stats["last_delivered_id"] or "-"),
        consumer_filter(consumer),
    )
