"""The Consumers tab: the bus's durable consumers (DESIGN §10) by name, with their stats.

Read with `list_consumers` every few seconds while the tab is shown (a
consumer's `pending` is a count the bus makes for each call, so a hidden tab
costs the bus nothing). `r` asks to redrive the selected consumer's dead
letters; on a bus without consumers the table says how to add one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message

from eventbus_cli.output import compact
from eventbus_cli.ui.lines import Column, ItemTable
from eventbus_cli.ui.polled import PolledTab
from eventbus_core.results import MAX_PENDING_COUNTED, ConsumerInfo

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

__all__ = [
    "ADD_HINT",
    "MISSING",
    "ConsumerTable",
    "consumer_filter",
    "consumers_tab",
    "read_consumers",
]

#: What an empty Consumers tab says.
ADD_HINT = "no consumers on this bus; add one with: eventbus consumers add NAME --topic 'jobs.>'"
#: What it says on a bus whose server predates consumers.
MISSING = "this bus has no durable consumers (its server predates them)"


async def read_consumers(client: EventBusClient) -> list[ConsumerInfo]:
    """The bus's consumers with their stats, by name."""
    return sorted(await client.list_consumers(), key=lambda consumer: consumer["name"])


def consumers_tab(table: ConsumerTable) -> PolledTab[list[ConsumerInfo]]:
    """The tab as the dashboard polls it (ui/polled.py)."""
    return PolledTab(
        "consumers",
        "consumers",
        ADD_HINT,
        MISSING,
        table,
        lambda bus: bus.consumers,
        read_consumers,
    )


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


class ConsumerTable(ItemTable[ConsumerInfo]):
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

    def key(self, item: ConsumerInfo) -> str:
        return item["name"]

    def item_cells(self, item: ConsumerInfo) -> tuple[str, ...]:
        return _cells(item)

    def cell_style(self, row: int, column: int) -> str:
        alert = self.ALERTS.get(column)
        return alert if alert and self.rows[row][column] != "0" else ""

    def action_redrive(self) -> None:
        if self.selected is not None:
            self.post_message(self.RedriveAsked(self, self.selected))


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
