"""How commands print: Rich on a terminal, JSON / NDJSON when piped or asked.

Errors go to stderr as one red line, never wrapped (not even on a terminal,
which folds it by itself); `--debug` adds the traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["Output", "cadence", "compact", "err_console", "format_ts"]

#: Never wrapped by us: one message stays one line for grep, logs and copy-paste
#: (a terminal folds a long line by itself).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def format_ts(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cadence(schedule: Mapping[str, Any], *, zone: bool = True) -> str:
    """How often a schedule ticks: `cron 30 2 * * * (Europe/Berlin)`, `every 5m`
    (`zone=False` leaves a cron's time zone to a column of its own)."""
    if schedule.get("cron"):
        timezone = schedule.get("timezone") or "UTC"
        shown = zone and timezone != "UTC"
        return f"cron {schedule['cron']}" + (f" ({timezone})" if shown else "")
    every_ms = int(schedule.get("every_ms") or 0)
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if every_ms and every_ms % ms == 0:
            return f"every {every_ms // ms}{unit}"  # as --every takes it: 90s, 5m, 1h
    return f"every {every_ms}ms"


def _cell(value: Any) -> str | Text:
    if isinstance(value, Text):  # already styled by the command
        return value
    if value is None:
        return "-"
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    return escape(compact(value))


def compact(value: Any, width: int = 60) -> str:
    """One line of JSON, cut to `width` with an ellipsis."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


class Output:
    """Chooses the form once per command: `json_mode` when asked or not a terminal."""

    def __init__(self, *, json_mode: bool | None = None) -> None:
        self.console = Console(highlight=False)
        self.json_mode = json_mode if json_mode is not None else not sys.stdout.isatty()

    def json_line(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def document(self, value: Any) -> None:
        """One result: a JSON document when piped, highlighted JSON on a terminal."""
        if self.json_mode:
            self.json_line(value)
        else:
            self.console.print_json(data=value)

    def events(self, events: Iterable[dict[str, Any]], *, title: str | None = None) -> None:
        rows = list(events)
        if self.json_mode:
            for event in rows:
                self.json_line(event)
            return
        table = Table(title=title, show_lines=False, header_style="bold")
        for column in ("id", "time (UTC)", "topic", "source", "payload"):
            table.add_column(column, overflow="fold" if column == "payload" else "ellipsis")
        for event in rows:
            table.add_row(
                str(event["event_id"]),
                format_ts(event.get("timestamp")),
                event["topic"],
                event.get("source_trn") or "-",
                compact(event.get("payload")),
            )
        self.console.print(table)

    def cloudevents(self, events: Iterable[dict[str, Any]], *, bus_id: str) -> None:
        """Events as structured CloudEvents, one JSON object per line (DESIGN §14's reverse mapping)."""
        from eventbus_core.cloudevents import to_cloudevent

        for event in events:
            self.json_line(to_cloudevent(event, default_source=f"trn:eventbus:{bus_id}"))

    def event_line(self, event: dict[str, Any]) -> None:
        """One live event: a JSON line when piped, one readable line on a terminal."""
        if self.json_mode:
            self.json_line(event)
            return
        source = f" [magenta]{escape(event['source_trn'])}[/]" if event.get("source_trn") else ""
        self.console.print(
            f"[cyan]#{event['event_id']}[/] [dim]{format_ts(event.get('timestamp'))}[/] "
            f"[bold]{escape(event['topic'])}[/]{source} {escape(compact(event.get('payload'), 120))}",
            soft_wrap=True,
        )

    def table(
        self,
        rows: Iterable[Mapping[str, Any]],
        columns: Sequence[tuple[str, str]],
        *,
        title: str | None = None,
    ) -> None:
        """`rows` as a table of `columns` ((key, header) pairs); NDJSON of whole rows when piped."""
        rows = list(rows)
        if self.json_mode:
            for row in rows:
                self.json_line(row)
            return
        table = Table(title=title, header_style="bold")
        for _, header in columns:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(key)) for key, _ in columns))
        self.console.print(table)

    def message(self, text: str) -> None:
        if self.json_mode:
            return
        self.console.print(text)
